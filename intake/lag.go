package intake

import (
	"context"
	"math/rand/v2"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// cpuGuard sheds load when the process has less CPU than its requests
// need. The in-flight bound and the ack latency only see the publish; when
// the HTTP work itself (reading, decoding, sealing) exceeds the CPU, every
// runnable goroutine waits its turn and latency grows for everyone while
// acks still look fast. The guard measures that wait directly: the Go
// runtime records how long each goroutine stayed runnable before it got a
// CPU (/sched/latencies:seconds), and the guard reads the high quantile of
// the last few milliseconds' waits. While it is above the target the guard
// refuses a growing share of new submissions before their body is read,
// which is the cheapest answer there is, until the wait is back under the
// target.
//
// (A probe goroutine that times its own wake-ups cannot see this wait: a
// goroutine woken by a timer runs next, ahead of the queue it would
// measure.)
type cpuGuard struct {
	target time.Duration
	// minActive: the guard only sheds while at least this many submissions
	// are being handled, so that a wait caused by something else (a GC
	// pause, a busy neighbour) does not refuse a trickle of requests.
	minActive int64
	permille  atomic.Int64 // share of submissions refused, in thousandths
	active    atomic.Int64 // submissions being handled
}

const (
	guardInterval = 5 * time.Millisecond
	// guardQuantile of the interval's scheduling waits is what the guard
	// holds under the target.
	guardQuantile = 0.9
	schedLatency  = "/sched/latencies:seconds"
)

func (g *cpuGuard) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	sample := []rtmetrics.Sample{{Name: schedLatency}}
	var prev []uint64
	t := time.NewTicker(guardInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rtmetrics.Read(sample)
		if sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
			return // not measured by this runtime: the guard stays off
		}
		h := sample[0].Value.Float64Histogram()
		lag, ok := intervalQuantile(prev, h, guardQuantile)
		prev = append(prev[:0], h.Counts...)
		if !ok {
			continue
		}
		g.observe(lag)
	}
}

// observe adjusts the refused share to one interval's scheduling wait.
func (g *cpuGuard) observe(lag time.Duration) {
	p := g.permille.Load()
	switch {
	case lag > g.target:
		// The further over, the faster the share grows.
		p = min(980, p+min(200, 20*int64(lag)/int64(g.target)))
	case lag < g.target/2:
		p = max(0, p-10)
	}
	g.permille.Store(p)
}

// intervalQuantile is the q-quantile of the waits recorded between two
// readings of the runtime's cumulative histogram (prev nil: nothing yet),
// taken as the upper bound of its bucket. ok is false when the interval
// recorded nothing.
func intervalQuantile(prev []uint64, h *rtmetrics.Float64Histogram, q float64) (time.Duration, bool) {
	if len(prev) != len(h.Counts) {
		return 0, false
	}
	var total uint64
	for i, c := range h.Counts {
		total += c - prev[i]
	}
	if total == 0 {
		return 0, false
	}
	rank := uint64(q * float64(total))
	var seen uint64
	for i, c := range h.Counts {
		seen += c - prev[i]
		if seen > rank {
			upper := h.Buckets[i+1]
			if upper > 3600 { // the last bucket is open (+Inf)
				upper = h.Buckets[i]
			}
			return time.Duration(upper * float64(time.Second)), true
		}
	}
	return 0, false
}

// refuses reports whether to shed this submission.
func (g *cpuGuard) refuses() bool {
	p := g.permille.Load()
	return p > 0 && g.active.Load() >= g.minActive && rand.Int64N(1000) < p
}
