package intake

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"
)

// cpuGuard sheds load when the process has less CPU than its requests
// need. The in-flight bound and the ack latency only see the publish; when
// the HTTP work itself (reading, parsing, refusing) exceeds the CPU, latency
// grows for everyone while acks still look fast, and most of that wait is
// where no request handler can see it: a request that has arrived waits in
// its socket until the runtime, busy with the goroutines it already has,
// polls the network again, and only then joins the run queue. (The
// runtime's own /sched/latencies metric starts counting after that poll:
// offered 1.3 times the capacity, its 90th percentile read about 1 ms
// while a probe byte on a loopback connection waited 12–80 ms to be read;
// docs/BENCHMARKS.md.)
//
// So the guard measures that wait the way a request meets it: every
// guardInterval, while submissions arrive, it writes a byte into a pipe
// whose reader, like every connection's, is woken by the network poller,
// and times how long the byte waits before its reader runs (wakeProbe).
// A standing wait, the smallest over the last guardWindow, is load: a
// burst or a GC pause raises the largest wait, not the smallest. While
// the standing wait is above the target the guard refuses a growing share
// of new submissions before their body is read, which is the cheapest
// answer there is; below half the target the share shrinks.
type cpuGuard struct {
	target time.Duration
	// minSeen: the guard only sheds while at least this many submissions
	// arrived over the window, so that a wait caused by something else (a
	// busy neighbour) does not refuse a trickle of requests that cannot
	// be its cause.
	minSeen  int64
	permille atomic.Int64 // share of submissions refused, in thousandths
	seen     atomic.Int64 // submissions since the last interval

	// The last guardWindow/guardInterval intervals' waits and submission
	// counts (run's goroutine only).
	waits []time.Duration
	seens []int64
}

const (
	// guardInterval is how often the guard probes and adjusts.
	guardInterval = 5 * time.Millisecond
	// guardWindow is how far back the standing wait is the smallest.
	guardWindow = 20 * time.Millisecond
)

func newCPUGuard(target time.Duration) *cpuGuard {
	n := int(guardWindow / guardInterval)
	return &cpuGuard{target: target, minSeen: 32, waits: make([]time.Duration, 0, n), seens: make([]int64, 0, n)}
}

// run measures and adjusts until ctx is done. Without a probe (the pipe
// could not be made) the guard stays off, and says so: intake keeps its
// other bounds.
func (g *cpuGuard) run(ctx context.Context, log *slog.Logger, done chan<- struct{}) {
	defer close(done)
	p, err := newWakeProbe()
	if err != nil {
		log.Warn("CPU guard off: no probe", slog.Any("err", err))
		return
	}
	defer p.close()
	tick := time.NewTicker(guardInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		seen := g.seen.Swap(0)
		g.interval(p.take(), seen)
		if seen > 0 {
			p.send() // an idle intake does not probe
		}
	}
}

// interval takes one interval's probe wait and submission count and
// adjusts the refused share to the window's.
func (g *cpuGuard) interval(wait time.Duration, seen int64) {
	if len(g.waits) == cap(g.waits) {
		g.waits, g.seens = append(g.waits[:0], g.waits[1:]...), append(g.seens[:0], g.seens[1:]...)
	}
	g.waits, g.seens = append(g.waits, wait), append(g.seens, seen)
	standing, total := g.waits[0], int64(0)
	for i, w := range g.waits {
		standing = min(standing, w)
		total += g.seens[i]
	}
	g.observe(standing, total)
}

// observe adjusts the refused share to the window's standing wait and
// submissions.
func (g *cpuGuard) observe(standing time.Duration, seen int64) {
	p := g.permille.Load()
	switch {
	case standing > g.target && seen >= g.minSeen:
		// The further over, the faster the share grows.
		p = min(980, p+min(200, 20*int64(standing)/int64(g.target)))
	case standing < g.target/2 || seen < g.minSeen:
		p = max(0, p-10)
	}
	g.permille.Store(p)
}

// refuses counts a submission and reports whether to shed it.
func (g *cpuGuard) refuses() bool {
	g.seen.Add(1)
	p := g.permille.Load()
	return p > 0 && rand.Int64N(1000) < p
}

// wakeProbe times how long a readable file waits before its reader runs:
// a byte written into a pipe is read by a goroutine that the network
// poller wakes, as it wakes every connection's. (A goroutine woken by a
// timer would not do: it runs next, ahead of the queue it would measure.)
// One byte is in flight at a time.
type wakeProbe struct {
	r, w   *os.File
	sentAt atomic.Int64 // unix nanoseconds of the byte in flight; 0: none
	// waited is the wait of the byte read since the last take (-1: none).
	// One byte is sent per interval and only when none is in flight, so
	// at most one is read between two takes.
	waited atomic.Int64
	done   chan struct{}
}

func newWakeProbe() (*wakeProbe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &wakeProbe{r: r, w: w, done: make(chan struct{})}
	p.waited.Store(-1)
	go p.read()
	return p, nil
}

func (p *wakeProbe) read() {
	defer close(p.done)
	buf := make([]byte, 16)
	for {
		if _, err := p.r.Read(buf); err != nil {
			return
		}
		at := p.sentAt.Swap(0)
		if at == 0 {
			continue
		}
		p.waited.Store(time.Now().UnixNano() - at)
	}
}

// send writes a byte unless one is still waiting to be read.
func (p *wakeProbe) send() {
	if p.sentAt.Load() != 0 {
		return
	}
	p.sentAt.Store(time.Now().UnixNano())
	if _, err := p.w.Write([]byte{1}); err != nil {
		p.sentAt.Store(0)
	}
}

// take returns the wait of the byte read since the last take or, when
// none was read, how long the byte in flight has waited so far (0: none).
func (p *wakeProbe) take() time.Duration {
	if waited := p.waited.Swap(-1); waited >= 0 {
		return time.Duration(waited)
	}
	if at := p.sentAt.Load(); at != 0 {
		return time.Duration(time.Now().UnixNano() - at)
	}
	return 0
}

func (p *wakeProbe) close() {
	p.w.Close()
	<-p.done
	p.r.Close()
}
