package stream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
	"github.com/prereg/prereg/worker"
)

// TestFeedSurvivesDeletedConsumer: an operator (or a lost replica)
// deletes the consumer under a running Feed; the Feed declares it again
// and keeps delivering, and its health says JetStream was down meanwhile.
func TestFeedSurvivesDeletedConsumer(t *testing.T) {
	t.Parallel()
	srv := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	h := worker.NewHealth("test", nil, nil)
	h.Running()
	f, err := stream.OpenFeed(ctx, stream.FeedConfig{
		JetStream: srv.JS,
		Stream:    stream.Verified,
		Consumer:  jetstream.ConsumerConfig{Durable: "feed-test", AckPolicy: jetstream.AckExplicitPolicy},
		Health:    h,
		RetryBase: 10 * time.Millisecond,
		RetryCap:  50 * time.Millisecond,
		Poll:      100 * time.Millisecond,
	})
	require.NoError(t, err)
	defer f.Stop()

	publish := func(body string) {
		t.Helper()
		_, err := srv.JS.Publish(ctx, stream.VerifiedSubject(0), []byte(body))
		require.NoError(t, err)
	}
	publish("one")
	m, err := f.Next(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "one", string(m.Data()))
	require.NoError(t, m.Ack())

	require.NoError(t, srv.JS.DeleteConsumer(ctx, stream.Verified, "feed-test"))
	publish("two")
	deadline := time.Now().Add(20 * time.Second)
	for {
		require.True(t, time.Now().Before(deadline), "no message after the consumer was deleted")
		m, err = f.Next(200 * time.Millisecond)
		if err == nil {
			break
		}
		require.NotErrorIs(t, err, jetstream.ErrMsgIteratorClosed)
	}
	// The new consumer starts from the stream's beginning (DeliverAll):
	// "one" again, unless it was removed; what matters is "two" arrives.
	for string(m.Data()) != "two" {
		require.NoError(t, m.Ack())
		m, err = f.Next(5 * time.Second)
		require.NoError(t, err)
	}
	require.NoError(t, m.Ack())
	require.True(t, h.State().Ready(), "JetStream is back: %s", h.State())

	f.Stop()
	_, err = f.Next(time.Second)
	require.True(t, errors.Is(err, jetstream.ErrMsgIteratorClosed), "after Stop: %v", err)
}
