package intake_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// TestGroupCommit submits concurrently to an intake with group commit on a
// JetStream that fsyncs every write: every 202 is in the stream exactly
// once under its receipt, retries of one idempotency key inside the same
// batches are de-duplicated, and the intents did go out in batches.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	js := streamtest.NewWith(t, stream.EmbeddedConfig{SyncAlways: true}, stream.Config{AtomicBatches: true})
	const n, retries = 120, 12
	// The CPU guard and the slow-ack bound are off: 132 submissions at
	// once, each fsync'd, under -race would have them shed some, and this
	// test is about what is accepted. The ack deadline is measured on this
	// machine as it is loaded now.
	timeout := ackDeadline(t, js, n+retries)
	e := setupOn(t, js, func(c *intake.Config) {
		c.DeviceRate, c.MaxQueueWait, c.GroupCommit = -1, -1, true
		c.SlowAck, c.PublishTimeout = time.Minute, timeout
	})

	var wg sync.WaitGroup
	answers := make(chan answer, n+retries)
	for i := range n {
		wg.Go(func() { answers <- e.post(t, body(map[string]any{"device_id": fmt.Sprintf("dev-%d", i)})) })
	}
	for range retries {
		wg.Go(func() { answers <- e.post(t, body(nil), "Idempotency-Key", "same-key") })
	}
	wg.Wait()
	close(answers)
	receipts := map[string]int{}
	for a := range answers {
		if a.Status != 202 {
			t.Fatalf("answered %d %v; shed so far, by reason: %v (ack deadline %s)", a.Status, a.Body, counters(t, e, "prereg_intake_shed_total"), timeout)
		}
		receipts[a.Body["receipt"].(string)]++
	}
	require.Len(t, receipts, n+1, "one receipt per device, and one for the retried key")

	stored := map[string]bool{}
	for _, m := range e.messages(t) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		require.False(t, stored[id], "a receipt is stored once")
		stored[id] = true
	}
	require.Len(t, stored, n+1)
	for r := range receipts {
		require.True(t, stored[r], "every 202 is in the stream")
	}

	batches, intents := histogram(t, e, "prereg_intake_group_size")
	require.Equal(t, float64(n+retries), intents, "every publish went through the grouper")
	require.Less(t, batches, intents, "some intents shared a batch")

	reused := e.post(t, body(map[string]any{"region": "26350"}), "Idempotency-Key", "same-key")
	require.Equal(t, 422, reused.Status, "the first submission is read back at the sequence JetStream gave")

	e.svc.Stop()
	require.Equal(t, 503, e.post(t, body(map[string]any{"device_id": "late"})).Status)
}

// TestGroupCommitNeedsAtomicBatches: on a stream that does not take atomic
// batches, group commit fails at start, not on every publish.
func TestGroupCommitNeedsAtomicBatches(t *testing.T) {
	t.Parallel()
	js := streamtest.New(t, stream.Config{})
	svc, err := intake.New(intake.Config{
		JetStream: js.JS, Conn: js.NC, Campaigns: staticCampaigns{testCampaign(t)},
		Hasher: keys.NewHasher(testHMAC), Sealer: testSealer(t), GroupCommit: true,
	})
	require.NoError(t, err)
	err = svc.Start(context.Background())
	require.ErrorContains(t, err, "does not allow atomic batches")
}

// histogram is a histogram's sample count and sum.
func histogram(tb testing.TB, e *env, name string) (count, sum float64) {
	tb.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return float64(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	tb.Fatalf("no metric %s", name)
	return 0, 0
}

// ackDeadline is the publish timeout for count intents sent at once to
// js, which fsyncs every write: the default 2s, unless the machine is so
// loaded now that group commit's worst case could take longer. That case
// is a batch JetStream refuses as a whole (a retry's duplicate inside it),
// whose count intents are then published at once and stored one flush
// after another. The same burst is timed on a scratch stream of the same
// server and disk, and the deadline is four times that: on an idle
// machine the default, under load what the load makes of the same work.
// A publish that never comes back, or an intent lost or stored twice,
// still fails the test.
func ackDeadline(tb testing.TB, js *streamtest.Server, count int) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := js.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ack_baseline", Subjects: []string{"ack_baseline"}})
	require.NoError(tb, err)
	_, err = js.JS.Publish(ctx, "ack_baseline", []byte("warm-up")) // creates the stream's file
	require.NoError(tb, err)
	errs := make([]error, count)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range count {
		wg.Go(func() { _, errs[i] = js.JS.Publish(ctx, "ack_baseline", []byte("x")) })
	}
	wg.Wait()
	burst := time.Since(start)
	require.NoError(tb, errors.Join(errs...))
	d := max(2*time.Second, 4*burst)
	tb.Logf("ack deadline %s: %d fsync'd publishes at once took %s", d, count, burst)
	return d
}

// counters is a counter vector's values by the value of its one label.
func counters(tb testing.TB, e *env, name string) map[string]float64 {
	tb.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(tb, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
