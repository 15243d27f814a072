package stream_test

import (
	"context"
	"errors"
	"fmt"
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
	e, port, js := startRestartable(t, dir)
	ctx := context.Background()

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
	awaitMessage(t, f, deadline, "after", "no message after the restart")
	require.True(t, h.State().Ready(), "JetStream is back: %s", h.State())
}

// TestFeedSurvivesForgottenPull: the pull request the iterator sends
// after a reconnect lands where the consumer does not exist yet (a
// restarted node that has not restored it, a consumer without a leader
// during an election). The server answers 503 No Responders, which
// nats.go's iterator swallows while it keeps counting the pull as
// pending, so it never sends another. The Feed must notice that the
// server holds no pull while messages wait, start over, and deliver what
// is published once the consumer is back.
func TestFeedSurvivesForgottenPull(t *testing.T) {
	t.Parallel()
	e, port, js := startRestartable(t, t.TempDir())
	nc := js.Conn()
	ctx := context.Background()

	consumer := jetstream.ConsumerConfig{Durable: "feed-forgotten", AckPolicy: jetstream.AckExplicitPolicy}
	h := worker.NewHealth("test", nil, nil)
	h.Running()
	f, err := stream.OpenFeed(ctx, stream.FeedConfig{
		JetStream: js,
		Stream:    stream.Verified,
		Consumer:  consumer,
		Health:    h,
		RetryBase: 10 * time.Millisecond,
		RetryCap:  100 * time.Millisecond,
		Poll:      100 * time.Millisecond,
		Quiet:     500 * time.Millisecond,
	})
	require.NoError(t, err)
	defer f.Stop()
	_, err = js.Publish(ctx, stream.VerifiedSubject(0), []byte("before"))
	require.NoError(t, err)
	m, err := f.Next(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "before", string(m.Data()))
	require.NoError(t, m.Ack())

	// A server with an empty store takes the old one's address: neither
	// the stream nor the consumer exists when the Feed's connection comes
	// back and pulls again.
	e.Shutdown()
	e, err = stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: t.TempDir(), Port: port})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	deadline := time.Now().Add(10 * time.Second)
	for nc.Stats().Reconnects == 0 || !nc.IsConnected() {
		require.True(t, time.Now().Before(deadline), "the connection never came back")
		_, err := f.Next(50 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout)
	}
	// Long enough for the pull after the reconnect to be sent and refused.
	for range 5 {
		_, err := f.Next(100 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout)
	}

	// An operator declares the stream and the consumer again.
	require.NoError(t, stream.Declare(ctx, js, stream.Config{}))
	_, err = js.CreateOrUpdateConsumer(ctx, stream.Verified, consumer)
	require.NoError(t, err)
	_, err = js.Publish(ctx, stream.VerifiedSubject(0), []byte("after"))
	require.NoError(t, err)
	deadline = time.Now().Add(15 * time.Second)
	awaitMessage(t, f, deadline, "after", "nothing delivered after the consumer came back: the iterator's pull was forgotten")
	require.True(t, h.State().Ready(), "JetStream is back: %s", h.State())
}

// TestFeedSurvivesLostLeaderNode: the node that leads the consumer goes
// down and comes back while the Feed's connection, to another node, stays
// up. The pull request died with the node and nothing said so (no
// reconnect, no status message: the consumer has one replica, so no
// follower knew the request), and the restored consumer holds none. The
// Feed must notice that no pull waits while messages do, and pull again.
func TestFeedSurvivesLostLeaderNode(t *testing.T) {
	t.Parallel()
	c := streamtest.NewCluster(t, 3)
	ctx := context.Background()
	admin, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = ajs.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "FEEDTEST", Subjects: []string{"feedtest.>"}, Replicas: 3})
		if err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "stream: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	consumer := jetstream.ConsumerConfig{Durable: "feed-leader", AckPolicy: jetstream.AckExplicitPolicy, Replicas: 1}
	cons, err := ajs.CreateOrUpdateConsumer(ctx, "FEEDTEST", consumer)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	leader := c.Index(info.Cluster.Leader)
	require.GreaterOrEqual(t, leader, 0, "consumer leader %q", info.Cluster.Leader)
	other := (leader + 1) % 3

	nc, err := nats.Connect(c.URL(other), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	h := worker.NewHealth("test", nil, nil)
	h.Running()
	f, err := stream.OpenFeed(ctx, stream.FeedConfig{
		JetStream: js,
		Stream:    "FEEDTEST",
		Consumer:  consumer,
		Health:    h,
		RetryBase: 10 * time.Millisecond,
		RetryCap:  200 * time.Millisecond,
		Poll:      100 * time.Millisecond,
		Quiet:     500 * time.Millisecond,
	})
	require.NoError(t, err)
	defer f.Stop()
	_, err = ajs.Publish(ctx, "feedtest.a", []byte("before"))
	require.NoError(t, err)
	m, err := f.Next(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "before", string(m.Data()))
	require.NoError(t, m.Ack())

	c.Shutdown(leader)
	for range 10 {
		_, err := f.Next(100 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout)
	}
	c.Start(leader)
	require.True(t, nc.IsConnected(), "the Feed's connection is to a node that stayed up")

	deadline = time.Now().Add(30 * time.Second)
	for {
		_, err = ajs.Publish(ctx, "feedtest.a", []byte("after"))
		if err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "publish after the restart: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	awaitMessage(t, f, deadline, "after", "nothing delivered after the consumer's node came back: the iterator's pull was lost with it")
	require.Equal(t, uint64(0), nc.Stats().Reconnects, "the Feed's connection never dropped")
}

// TestFeedDrain: Drain hands out what the client already holds, then
// says the Feed is closed; a Stop after it ends it at once.
func TestFeedDrain(t *testing.T) {
	t.Parallel()
	srv := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	open := func(durable string) (*stream.Feed, *nats.Conn) {
		t.Helper()
		// A connection of its own, whose count of messages in says when
		// the published ones have reached the client.
		nc, err := srv.Connect()
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		h := worker.NewHealth("test", nil, nil)
		h.Running()
		f, err := stream.OpenFeed(ctx, stream.FeedConfig{
			JetStream: js,
			Stream:    stream.Verified,
			Consumer:  jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: stream.VerifiedSubject(0)},
			Health:    h,
			Poll:      100 * time.Millisecond,
		})
		require.NoError(t, err)
		t.Cleanup(f.Stop)
		return f, nc
	}
	publish := func(n int) {
		t.Helper()
		for i := range n {
			_, err := srv.JS.Publish(ctx, stream.VerifiedSubject(0), []byte(fmt.Sprint(i)))
			require.NoError(t, err)
		}
	}

	f, nc := open("feed-drain")
	in := nc.Stats().InMsgs
	publish(3)
	require.Eventually(t, func() bool { return nc.Stats().InMsgs >= in+3 }, 5*time.Second, 5*time.Millisecond)
	m, err := f.Next(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "0", string(m.Data()))
	f.Drain()
	var got []string
	for {
		m, err := f.Next(5 * time.Second)
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			break
		}
		require.NoError(t, err)
		got = append(got, string(m.Data()))
	}
	require.Equal(t, []string{"1", "2"}, got)

	g, _ := open("feed-drain-stop")
	_, err = g.Next(5 * time.Second)
	require.NoError(t, err)
	g.Drain()
	g.Stop()
	_, err = g.Next(time.Second)
	require.ErrorIs(t, err, jetstream.ErrMsgIteratorClosed)
}

// awaitMessage waits until the Feed hands out a message, failing with why
// at deadline, and checks and acknowledges it.
func awaitMessage(t *testing.T, f *stream.Feed, deadline time.Time, want, why string) {
	t.Helper()
	for {
		require.True(t, time.Now().Before(deadline), why)
		m, err := f.Next(200 * time.Millisecond)
		if err != nil {
			require.ErrorIs(t, err, nats.ErrTimeout)
			continue
		}
		require.Equal(t, want, string(m.Data()))
		require.NoError(t, m.Ack())
		return
	}
}

// startRestartable starts an embedded JetStream with its store in dir,
// connects with unlimited reconnects and declares the streams: a server a
// test can shut down and start again on the same port and store.
func startRestartable(t *testing.T, dir string) (*stream.Embedded, int, jetstream.JetStream) {
	t.Helper()
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: -1})
	require.NoError(t, err)
	nc, err := nats.Connect(e.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, stream.Declare(context.Background(), js, stream.Config{}))
	return e, e.Server().Addr().(*net.TCPAddr).Port, js
}
