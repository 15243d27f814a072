package notify

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group commit of delivery reports. The gateway posts a report per
// message, each on a request of its own, from many connections at once: a
// national campaign's evening is millions of them. Recorded in a
// transaction each, their commits and round trips would be most of what
// PostgreSQL spends on notify. reportBatcher records the reports that
// arrive while a batch is being recorded together, in the next batch: one
// statement and one commit for all of them, and each request is answered
// when its batch has committed, so a 200 still means "stored".
//
// No report waits for company: a report that arrives when nothing is
// being recorded goes out at once, alone. Batches grow only with the
// rate, by as many as arrived during one commit, so the latency of a
// report stays about one commit at any rate.

const (
	// reportBatchMax bounds one batch: its statement's arrays and the
	// rows it locks.
	reportBatchMax = 500
	// reportBatchTimeout bounds the recording of one batch. The batch is
	// recorded on behalf of every request in it, so no request's context
	// (a gateway that hung up) may cancel it.
	reportBatchTimeout = 10 * time.Second
)

// reportBatcher gathers concurrent delivery reports into batches for
// Reports.RecordReports. One batch is recorded at a time per batcher: the
// reports that come meanwhile make the next. The goroutine that records
// runs only while there is something to record.
type reportBatcher struct {
	store Reports

	mu        sync.Mutex
	queue     []*pendingReport
	recording bool
}

// pendingReport is one request's report waiting for its batch.
type pendingReport struct {
	r    Report
	res  ReportResult
	err  error
	done chan struct{}
}

func newReportBatcher(store Reports) *reportBatcher {
	return &reportBatcher{store: store}
}

// record records r with whatever reports arrive with it and returns what
// recording it did. When ctx ends first it returns ctx's error; the report
// may still be recorded, and the gateway's retry then finds it seen.
func (b *reportBatcher) record(ctx context.Context, r Report) (ReportResult, error) {
	p := &pendingReport{r: r, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if !b.recording {
		b.recording = true
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run records batches until the queue is empty.
func (b *reportBatcher) run() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), reportBatchMax)
		if n == 0 {
			b.recording = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		if len(b.queue) == 0 {
			b.queue = nil // let the backing array go with the batch
		}
		b.mu.Unlock()
		b.flush(batch)
	}
}

// flush records one batch and answers its requests. A report that is the
// same as an earlier one of the batch (the gateway's retry arriving while
// the first is still being recorded) is not sent again: it gets the
// earlier one's answer, seen rather than recorded.
func (b *reportBatcher) flush(batch []*pendingReport) {
	type same struct{ key, mid, status string }
	first := make(map[same]int, len(batch))
	reports := make([]Report, 0, len(batch))
	of := make([]int, len(batch)) // batch index → reports index
	for i, p := range batch {
		k := same{p.r.Key, p.r.MessageID, p.r.Status}
		j, ok := first[k]
		if !ok {
			j = len(reports)
			first[k] = j
			reports = append(reports, p.r)
		}
		of[i] = j
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportBatchTimeout)
	res, err := b.store.RecordReports(ctx, reports)
	cancel()
	if err == nil && len(res) != len(reports) {
		err = fmt.Errorf("record delivery reports: %d results for %d reports", len(res), len(reports))
	}
	answered := make([]bool, len(reports))
	for i, p := range batch {
		j := of[i]
		switch {
		case err != nil:
			p.err = err
		case answered[j] && res[j] == ReportRecorded:
			p.res = ReportSeen
		default:
			p.res = res[j]
		}
		answered[j] = true
		close(p.done)
	}
}
