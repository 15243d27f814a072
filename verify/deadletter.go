package verify

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/worker"
)

// DeadLetters records a message verify cannot decide before it is
// terminated (postgres.DeadLetterStore). Of a submitted intent only the
// payload's hash and length are kept: it may hold an identity token.
type DeadLetters interface {
	Record(ctx context.Context, l deadletter.Letter) error
}

// depDeadLetters is the dependency a dead letter is recorded in.
const depDeadLetters = "postgresql: dead letters"

// terminate records msg as a dead letter, and only then terminates it.
// When the record fails the message is put back instead: an unavailable
// database holds it like any infrastructure fault, and it is never
// dropped unrecorded.
func (v *Verifier) terminate(ctx context.Context, msg jetstream.Msg, reason string, cause error) {
	seq := streamSeq(msg)
	if v.cfg.DeadLetters != nil {
		err := v.cfg.DeadLetters.Record(ctx, deadletter.New(stream.Submitted, msg, reason, cause, v.now()))
		if worker.Unavailable(err) {
			v.note(v.health, depDeadLetters, err)
		}
		if err != nil {
			v.log.Warn("verify: dead letter not recorded, retry later", slog.Uint64("stream_seq", seq), slog.Any("err", err))
			v.nak(msg, "infrastructure")
			return
		}
		v.note(v.health, depDeadLetters, nil)
		v.m.deadLetters.WithLabelValues(stream.Submitted, reason).Inc()
	}
	v.log.Error("verify: message terminated", slog.Uint64("stream_seq", seq), slog.String("subject", msg.Subject()), slog.String("reason", reason), slog.Any("err", cause))
	_ = msg.TermWithReason(reason)
	v.m.naks.WithLabelValues("terminated").Inc()
}
