package notify

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// batchStore records what it is given: each call's reports, answering
// every report recorded unless its key is "unknown". With entered set, it
// closes entered on its first call and holds that call until release is
// closed.
type batchStore struct {
	mu      sync.Mutex
	calls   [][]Report
	entered chan struct{}
	release chan struct{}
	err     error
}

func (s *batchStore) RecordReports(ctx context.Context, rs []Report) ([]ReportResult, error) {
	s.mu.Lock()
	s.calls = append(s.calls, rs)
	first := len(s.calls) == 1
	s.mu.Unlock()
	if first && s.entered != nil {
		close(s.entered)
		<-s.release
	}
	if s.err != nil {
		return nil, s.err
	}
	res := make([]ReportResult, len(rs))
	for i, r := range rs {
		if r.Key == "unknown" {
			res[i] = ReportUnknown
		}
	}
	return res, nil
}

func TestReportBatcherGroupsWhatArrivesDuringACommit(t *testing.T) {
	t.Parallel()
	store := &batchStore{entered: make(chan struct{}), release: make(chan struct{})}
	b := newReportBatcher(store)
	ctx := context.Background()

	firstDone := make(chan ReportResult, 1)
	go func() {
		res, err := b.record(ctx, Report{Key: "k0", MessageID: "m0", Status: ReportDelivered})
		assert.NoError(t, err)
		firstDone <- res
	}()
	<-store.entered // the first report is being recorded, alone

	reports := []Report{
		{Key: "k1", MessageID: "m1", Status: ReportDelivered},
		{Key: "k1", MessageID: "m1", Status: ReportDelivered}, // the gateway's retry
		{Key: "unknown", MessageID: "m2", Status: ReportDelivered},
		{Key: "k3", MessageID: "m3", Status: ReportFailed},
	}
	results := make([]ReportResult, len(reports))
	var wg sync.WaitGroup
	for i, r := range reports {
		wg.Go(func() {
			res, err := b.record(ctx, r)
			assert.NoError(t, err)
			results[i] = res
		})
	}
	// Wait until all four are queued behind the first batch.
	for {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == len(reports) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(store.release)
	wg.Wait()
	require.Equal(t, ReportRecorded, <-firstDone)

	require.Len(t, store.calls, 2, "the four that came during the first commit make one batch")
	require.Len(t, store.calls[0], 1)
	require.Len(t, store.calls[1], 3, "the retry is not sent twice")
	recorded, seen := 0, 0
	for i, r := range results {
		switch {
		case reports[i].Key == "unknown":
			require.Equal(t, ReportUnknown, r)
		case r == ReportRecorded:
			recorded++
		case r == ReportSeen:
			seen++
		}
	}
	require.Equal(t, 2, recorded, "k1 once, k3")
	require.Equal(t, 1, seen, "k1's retry")

	b.mu.Lock()
	defer b.mu.Unlock()
	require.False(t, b.recording, "nothing runs once the queue is empty")
}

func TestReportBatcherErrors(t *testing.T) {
	t.Parallel()
	broken := errors.New("database down")
	b := newReportBatcher(&batchStore{err: broken})
	_, err := b.record(context.Background(), Report{Key: "k", MessageID: "m", Status: ReportDelivered})
	require.ErrorIs(t, err, broken)

	held := &batchStore{entered: make(chan struct{}), release: make(chan struct{})}
	b = newReportBatcher(held)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-held.entered
		cancel()
	}()
	_, err = b.record(ctx, Report{Key: "k", MessageID: "m", Status: ReportDelivered})
	require.ErrorIs(t, err, context.Canceled, "a request that ends answers at once")
	close(held.release)
}
