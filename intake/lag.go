package intake

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// cpuGuard sheds load when the process has less CPU than its requests
// need. The in-flight bound and the ack latency only see the publish; when
// the HTTP work itself (reading, decoding, sealing) exceeds the CPU, every
// runnable goroutine waits its turn and latency grows for everyone while
// acks still look fast. The guard measures that wait directly, as how late
// a short sleep wakes up (the scheduling lag), and while it is above the
// target it refuses a growing share of new submissions before their body
// is read, which is the cheapest answer there is, until the lag is back
// under the target.
type cpuGuard struct {
	target time.Duration
	// minActive: the guard only sheds while at least this many submissions
	// are being handled, so that a lag caused by something else (a GC
	// pause, a busy neighbour) does not refuse a trickle of requests.
	minActive int64
	lag       atomic.Int64 // moving average, nanoseconds
	permille  atomic.Int64 // share of submissions refused, in thousandths
	active    atomic.Int64 // submissions being handled
}

const lagProbe = 2 * time.Millisecond

func (g *cpuGuard) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(lagProbe)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// The timer fires on time; the goroutine runs when it gets a
			// CPU. The difference is the lag.
			late := max(0, time.Since(last)-lagProbe)
			old := g.lag.Load()
			avg := old + (int64(late)-old)/4
			g.lag.Store(avg)
			p := g.permille.Load()
			switch {
			case avg > int64(g.target):
				// The further over, the faster the share grows: a probe
				// that wakes 100ms late has missed 50 chances to react.
				p = min(950, p+min(250, 25*avg/int64(g.target)))
			case avg < int64(g.target)/2:
				p = max(0, p-10)
			}
			g.permille.Store(p)
			last = time.Now()
			t.Reset(lagProbe)
		}
	}
}

// refuses reports whether to shed this submission.
func (g *cpuGuard) refuses() bool {
	p := g.permille.Load()
	return p > 0 && g.active.Load() >= g.minActive && rand.Int64N(1000) < p
}
