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
// burst or a GC pause raises the largest wait, not the smallest.
//
// What it controls is the rate of submissions it admits, not the share
// it refuses: a refusal is not free (on loopback HTTP about half of an
// accepted intent, most of both being the socket's read and write), so
// the core's work is admitted × cost + refused × refusal cost, and the
// most it can admit without a queue, L* = (1 − arrivals × refusal cost) /
// (cost − refusal cost), is a rate that falls as arrivals grow. The guard
// holds the standing wait at half its target with a proportional-integral
// controller on the admitted rate: the integral part moves the rate in
// proportion to the wait's distance from that set point (up while the
// wait is below, down while above), so it settles only where the wait
// sits at the set point, which is where admissions equal L*; the
// proportional part cuts at once in proportion to the excess, which damps
// the swing an integral alone keeps up. Once the rate no longer binds, it
// stops refusing. Each arrival is refused with the probability that keeps
// admissions at the rate (1 − rate/arrivals), decided before the body is
// read. docs/SCALING.md says why this converges and what to expect.
type cpuGuard struct {
	target time.Duration
	// minSeen: the guard only sheds while at least this many submissions
	// arrived over the window, so that a wait caused by something else (a
	// busy neighbour) does not refuse a trickle of requests that cannot
	// be its cause.
	minSeen  int64
	permille atomic.Int64 // share of submissions refused, in thousandths
	seen     atomic.Int64 // submissions since the last interval
	admitted atomic.Int64 // of which not refused

	// The controller's state (run's goroutine only): the last
	// guardWindow/guardInterval intervals' waits and submission counts,
	// the smoothed arrival and admission rates (per second), the admitted
	// rate it holds to (0: none, nothing is refused) and that rate's
	// integral part (base).
	waits    []time.Duration
	seens    []int64
	arrivals float64
	admits   float64
	limit    float64
	base     float64
	lastRead time.Duration // the probe's last wait read
}

const (
	// guardInterval is how often the guard probes and adjusts.
	guardInterval = 5 * time.Millisecond
	// guardWindow is how far back the standing wait is the smallest.
	guardWindow = 20 * time.Millisecond
	// guardMaxPermille: the guard never refuses everything, so that it
	// keeps seeing what admitted submissions cost.
	guardMaxPermille = 980
	// The controller's gains, per interval, on the error: how far the
	// standing wait is from half the target, in targets, at most
	// guardMaxError. The integral part moves the admitted rate by 2 % of
	// itself per interval per target of error; the proportional part
	// lowers it by 30 % per target of error on top, at once, which damps
	// the swing that an integral alone would keep up (the queue is itself
	// the integral of the excess). Below the set point the integral moves
	// four times as fast (guardKIUp), so that after a surge the rate is
	// back from the most refused in about half a second. At 3 targets of
	// wait the rate falls 6 % every 5 ms; with no wait at all it rises 4 %.
	guardKI, guardKIUp, guardKP, guardMaxError = 0.02, 0.08, 0.3, 3
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
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// This goroutine may run late on a busy core: rates are per the
		// time that actually passed between two counts.
		now := time.Now()
		wait, read := p.take()
		if g.tick(wait, read, now.Sub(last)) {
			p.send() // an idle intake does not probe
		}
		last = now
	}
}

// tick takes one interval's probe reading and length, with the
// submissions counted since the last, adjusts, and reports whether any
// arrived.
//
// A byte read gives the wait it met. A byte still in flight gives only a
// lower bound, its age: just after it was sent that is near 0 whatever
// the queue, so while one is in flight the interval counts the last wait
// read, or the age once it is longer. (Counting the age alone, a queue
// longer than the window hid behind each fresh byte's small age.)
func (g *cpuGuard) tick(wait time.Duration, read bool, dt time.Duration) bool {
	seen, admitted := g.seen.Swap(0), g.admitted.Swap(0)
	switch {
	case read:
		g.lastRead = wait
	case wait > 0:
		wait = max(wait, g.lastRead)
	default:
		g.lastRead = 0 // idle: nothing in flight
	}
	g.interval(wait, seen, admitted, dt)
	return seen > 0
}

// interval adjusts the admitted rate to one interval's probe wait,
// submissions and admissions, and publishes the share to refuse.
func (g *cpuGuard) interval(wait time.Duration, seen, admitted int64, dt time.Duration) {
	if len(g.waits) == cap(g.waits) {
		g.waits, g.seens = append(g.waits[:0], g.waits[1:]...), append(g.seens[:0], g.seens[1:]...)
	}
	g.waits, g.seens = append(g.waits, wait), append(g.seens, seen)
	standing, total := g.waits[0], int64(0)
	for i, w := range g.waits {
		standing = min(standing, w)
		total += g.seens[i]
	}
	if dt <= 0 {
		dt = guardInterval
	}
	// Rates smoothed over about two intervals: one interval's count is a
	// few hundred submissions, noisy by several percent.
	g.arrivals = smooth(g.arrivals, float64(seen)/dt.Seconds())
	g.admits = smooth(g.admits, float64(admitted)/dt.Seconds())
	g.observe(standing, total)
	var p int64
	if g.limit > 0 && g.arrivals > 0 {
		p = int64(1000 * (1 - g.limit/g.arrivals))
	}
	g.permille.Store(min(guardMaxPermille, max(0, p)))
}

func smooth(avg, v float64) float64 {
	if avg == 0 {
		return v // the first interval after idling: nothing to smooth with
	}
	return avg + (v-avg)/2
}

// observe adjusts the admitted rate to the window's standing wait and
// submissions.
func (g *cpuGuard) observe(standing time.Duration, seen int64) {
	if seen < g.minSeen {
		g.limit, g.base = 0, 0
		return
	}
	e := float64(standing-g.target/2) / float64(g.target)
	e = min(guardMaxError, max(-0.5, e))
	if g.base == 0 {
		// Off, it starts only past the target, not the set point: a
		// core busy enough to wait a few milliseconds needs no refusals.
		if standing <= g.target {
			return
		}
		g.base = g.admits // start from what was admitted
	}
	ki := guardKI
	if e < 0 {
		ki = guardKIUp
	}
	g.base *= 1 - ki*e
	// Not below what the most refused leaves admitted: an integral wound
	// further down would only take longer to climb back.
	g.base = max(g.base, (1-guardMaxPermille/1000.0)*g.arrivals)
	g.limit = max(1, g.base*(1-guardKP*e))
	if e < 0 && g.limit > 1.25*g.arrivals {
		g.limit, g.base = 0, 0 // no longer binding: stop refusing
	}
}

// refusesAtOnce reports whether a submission is refused before anything
// of it is read, and why: intake is draining, or the CPU guard sheds it.
// It counts the submission for the guard, so it is asked once for each.
func (s *Service) refusesAtOnce() (reason string, refused bool) {
	if s.draining.Load() {
		return shedDraining, true
	}
	if s.guard != nil && s.guard.refuses() {
		return shedCPU, true
	}
	return "", false
}

// refuses counts a submission and reports whether to shed it.
func (g *cpuGuard) refuses() bool {
	g.seen.Add(1)
	if p := g.permille.Load(); p > 0 && rand.Int64N(1000) < p {
		return true
	}
	g.admitted.Add(1)
	return false
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

// take returns the wait of the byte read since the last take (read) or,
// when none was read, how long the byte in flight has waited so far (0:
// none in flight).
func (p *wakeProbe) take() (wait time.Duration, read bool) {
	if waited := p.waited.Swap(-1); waited >= 0 {
		return time.Duration(waited), true
	}
	if at := p.sentAt.Load(); at != 0 {
		return time.Duration(time.Now().UnixNano() - at), false
	}
	return 0, false
}

func (p *wakeProbe) close() {
	p.w.Close()
	<-p.done
	p.r.Close()
}
