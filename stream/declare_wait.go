package stream

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/worker"
)

// clusterUnavailable is JetStream's "system temporarily unavailable": a
// cluster without a meta leader (JSClusterNotAvailErr).
const clusterUnavailable jetstream.ErrorCode = 10008

// notReady reports whether a declaration failed because JetStream cannot
// answer yet (a cluster electing its leaders, a node starting), not because
// of what was declared.
func notReady(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == clusterUnavailable
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// DeclareWhenReady is Declare for a process that starts beside its
// JetStream: on a cluster still electing its leaders the declaration times
// out, and every process of a deployment declares at once. It tries again
// as WhenReady does; an error about the streams themselves (a retention
// that cannot change in place) is returned at once.
func DeclareWhenReady(ctx context.Context, js jetstream.JetStream, c Config) error {
	return WhenReady(ctx, c.Logger, "declare the streams", func(ctx context.Context) error {
		return Declare(ctx, js, c)
	})
}

// WhenReady runs fn, what a process does with JetStream as it starts
// (declare the streams, bind a bucket), until it succeeds or fails for a
// reason other than JetStream not answering yet: a cluster whose streams
// still elect their leaders times out. It tries again with capped backoff
// until ctx ends, saying so once a wait starts and once a minute after.
func WhenReady(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var since, said time.Time
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !notReady(err) || ctx.Err() != nil {
			if err == nil && !since.IsZero() {
				log.Info("JetStream ready", slog.String("to", what), slog.Duration("after", time.Since(since).Round(time.Millisecond)), slog.Int("attempts", attempt))
			}
			return err
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		}
		if said.IsZero() || now.Sub(said) >= time.Minute {
			said = now
			log.Warn("JetStream is not ready; waiting", slog.String("to", what), slog.Int("attempts", attempt), slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(worker.Backoff(attempt, 100*time.Millisecond, 5*time.Second)):
		}
	}
}
