package intake

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// TestGrouperAcks publishes concurrently through the grouper, with ids
// already stored among them: each new message's ack names its own
// sequence, and each old one gets JetStream's duplicate ack (the batch it
// fell in was refused as a whole and published one by one).
func TestGrouperAcks(t *testing.T) {
	t.Parallel()
	js := streamtest.NewWith(t, stream.EmbeddedConfig{SyncAlways: true}, stream.Config{AtomicBatches: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := func(id string) *nats.Msg {
		m := nats.NewMsg(stream.SubmittedSubject(len(id) % 4))
		m.Data = []byte("intent " + id)
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}
	const old = 5
	for i := range old {
		_, err := js.JS.PublishMsg(ctx, msg("old-"+strconv.Itoa(i)))
		require.NoError(t, err)
	}

	var sizes []int
	var mu sync.Mutex
	g := newGrouper(js.NC, 5*time.Second, func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() }, nil)
	defer g.close()
	const n = 200
	acks := make([]*jetstream.PubAck, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := "new-" + strconv.Itoa(i)
		if i%40 == 0 {
			id = "old-" + strconv.Itoa(i/40)
		}
		wg.Go(func() { acks[i], errs[i] = g.publish(msg(id)) })
	}
	wg.Wait()

	st, err := js.JS.Stream(ctx, stream.Submitted)
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, errs[i])
		m, err := st.GetMsg(ctx, acks[i].Sequence)
		require.NoError(t, err)
		want := "new-" + strconv.Itoa(i)
		if i%40 == 0 {
			want = "old-" + strconv.Itoa(i/40)
			require.True(t, acks[i].Duplicate, "an id already stored gets a duplicate ack")
		} else {
			require.False(t, acks[i].Duplicate)
		}
		require.Equal(t, want, m.Header.Get(jetstream.MsgIDHeader), "ack %d names its own message", i)
		require.Empty(t, m.Header.Get(hdrBatchCommit), "")
	}
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(n-n/40+old), info.State.Msgs, "every new id once, the old ones not again")
	mu.Lock()
	require.Less(t, len(sizes), n, "some messages shared a batch")
	mu.Unlock()
}

// TestGrouperWithoutAtomicBatches: should the stream stop taking atomic
// batches (redeclared by a process without group commit), every intent is
// still stored, one by one.
func TestGrouperWithoutAtomicBatches(t *testing.T) {
	t.Parallel()
	js := streamtest.NewWith(t, stream.EmbeddedConfig{SyncAlways: true}, stream.Config{})
	var batches atomic.Int64
	var logged bytes.Buffer
	g := newGrouper(js.NC, 5*time.Second, func(n int) {
		if n > 1 {
			batches.Add(1)
		}
	}, slog.New(slog.NewTextHandler(&logged, nil)))
	const n = 100
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := nats.NewMsg(stream.SubmittedSubject(i % 4))
			m.Header.Set(jetstream.MsgIDHeader, "id-"+strconv.Itoa(i))
			_, errs[i] = g.publish(m)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.JS.Stream(ctx, stream.Submitted)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(n), info.State.Msgs)
	require.Positive(t, batches.Load(), "batches were tried, and refused")
	g.close()
	require.Equal(t, 1, strings.Count(logged.String(), "refuses atomic batches"), "the operator hears of it, once: %s", logged.String())
}
