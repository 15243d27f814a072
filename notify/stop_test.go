package notify_test

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
)

// heldGateway takes one message at a time and answers only when released;
// it notes whether a call's context was cancelled under it.
type heldGateway struct {
	started   chan struct{}
	release   chan struct{}
	calls     atomic.Int64
	cancelled atomic.Int64
}

func (g *heldGateway) Send(ctx context.Context, m notify.Outgoing) (notify.Accepted, error) {
	g.calls.Add(1)
	select {
	case g.started <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return notify.Accepted{MessageID: "gw-" + m.Key}, nil
	case <-ctx.Done():
		g.cancelled.Add(1)
		return notify.Accepted{}, ctx.Err()
	}
}

// TestStopLetsSendsInFlightFinish: Stop does not cancel a gateway call in
// flight; it waits for its answer and records it, so the message is marked
// sent rather than left unconfirmed (and sent again).
func TestStopLetsSendsInFlightFinish(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 3})
	gw := &heldGateway{started: make(chan struct{}, 1), release: make(chan struct{})}
	wk, err := notify.New(notify.Config{
		Outbox: w.store, Gateway: gw, Phones: w.sealer, Campaigns: &postgres.CampaignStore{Pool: w.db.Pool},
		Rate: math.Inf(1), Concurrency: 1, Loops: 1, PollInterval: 20 * time.Millisecond, SendTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, wk.Start(context.Background()))
	select {
	case <-gw.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no send started")
	}

	stopped := make(chan struct{})
	go func() { wk.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a send was in flight")
	case <-time.After(300 * time.Millisecond):
	}
	close(gw.release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the send finished")
	}
	require.Zero(t, gw.cancelled.Load(), "no call cancelled by Stop")
	require.EqualValues(t, 1, gw.calls.Load(), "what was queued is released, not sent")
	require.EqualValues(t, 1, wk.Stats().Sent)
	c := w.counts(t)
	require.Equal(t, 1, c.Sent, "the send in flight is recorded as sent")
	require.Zero(t, c.UnconfirmedSends)
	require.Equal(t, 2, c.Pending)
}
