package stream_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

// TestFeedSurvivesServerRestart: the JetStream server restarts (same
// store) under a running Feed; messages published after it are delivered
// without anyone re-opening anything.
func TestFeedSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: -1})
	require.NoError(t, err)
	port := e.Server().Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(e.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, stream.Declare(ctx, js, stream.Config{}))

	h := worker.NewHealth("test", nil, nil)
	h.Running()
	f, err := stream.OpenFeed(ctx, stream.FeedConfig{
		JetStream: js,
		Stream:    stream.Verified,
		Consumer:  jetstream.ConsumerConfig{Durable: "feed-restart", AckPolicy: jetstream.AckExplicitPolicy},
		Health:    h,
		RetryBase: 10 * time.Millisecond,
		RetryCap:  100 * time.Millisecond,
		Poll:      100 * time.Millisecond,
	})
	require.NoError(t, err)
	defer f.Stop()

	e.Shutdown()
	// The feed notices the server is gone while it waits.
	deadline := time.Now().Add(10 * time.Second)
	for h.State().Ready() {
		require.True(t, time.Now().Before(deadline), "the feed never noticed the server was gone")
		_, err := f.Next(100 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout)
	}
	e, err = stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: port})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)

	deadline = time.Now().Add(20 * time.Second)
	for {
		require.True(t, time.Now().Before(deadline), "no message after the restart")
		if _, err := js.Publish(ctx, stream.VerifiedSubject(0), []byte("after")); err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		break
	}
	for {
		require.True(t, time.Now().Before(deadline), "no message after the restart")
		m, err := f.Next(200 * time.Millisecond)
		if err != nil {
			require.ErrorIs(t, err, nats.ErrTimeout)
			continue
		}
		require.Equal(t, "after", string(m.Data()))
		require.NoError(t, m.Ack())
		break
	}
	require.True(t, h.State().Ready(), "JetStream is back: %s", h.State())
}
