package intake_test

import (
	"context"
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
	// The CPU guard and the slow-ack bound are off: 132 submissions at
	// once, each fsync'd, under -race would have them shed some, and this
	// test is about what is accepted.
	e := setupOn(t, js, func(c *intake.Config) {
		c.DeviceRate, c.MaxQueueWait, c.GroupCommit = -1, -1, true
		c.SlowAck = time.Minute
	})

	const n, retries = 120, 12
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
		require.Equal(t, 202, a.Status, "%v", a.Body)
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
