package dedupe

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/worker"
)

// DeadLetters records a message dedupe cannot decide before it is
// terminated (postgres.DeadLetterStore).
type DeadLetters interface {
	Record(ctx context.Context, l deadletter.Letter) error
}

// deadLetter records m as a dead letter and reports whether the message
// may now be terminated. When the database is unavailable it returns the
// error (the caller holds the message); when the record fails otherwise
// the message is put back to be recorded on a later try. Either way it is
// never dropped unrecorded.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, reason string, cause error) (bool, error) {
	if w.cfg.DeadLetters == nil {
		return true, nil
	}
	err := w.cfg.DeadLetters.Record(ctx, deadletter.New(stream.Verified, m, reason, cause, w.cfg.Now()))
	switch {
	case err == nil:
		w.dead.WithLabelValues(stream.Verified, reason).Inc()
		return true, nil
	case worker.Unavailable(err):
		return false, err
	}
	seq := streamSeq(m)
	w.log.Error("dedupe: dead letter not recorded, retrying later", slog.Uint64("stream_seq", seq), slog.Any("err", err))
	_ = m.NakWithDelay(w.backoff(w.tries[seq]))
	return false, nil
}

// giveUpReason names why a message could not become an item.
func giveUpReason(m jetstream.Msg, err error) string {
	switch {
	case isSubjectMalformed(m):
		return deadletter.ReasonMalformedSubject
	case errors.Is(err, prereg.ErrCampaignNotFound):
		return deadletter.ReasonNoCampaign
	case m.Headers().Get(jetstream.MsgIDHeader) == "" && errors.Is(err, stream.ErrMalformed):
		return deadletter.ReasonNoReceipt
	}
	return deadletter.ReasonUndecodable
}

func isSubjectMalformed(m jetstream.Msg) bool {
	_, err := stream.ShardOf(m.Subject())
	return err != nil
}
