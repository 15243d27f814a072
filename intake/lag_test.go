package intake

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// shedder is what the overload simulation drives: the CPU guard, or a
// deliberately bad controller that shows the simulation can fail.
type shedder interface {
	tick(wait time.Duration, read bool, dt time.Duration) bool
	refuses() bool
}

// surgeCore is one core serving submissions, as a fluid queue: each
// interval the admitted and refused submissions add their cost to the
// backlog, and the core works it off at one second per second. The
// guard's probe byte, sent at the start of an interval, is read once the
// backlog in front of it is done, as on a core that polls the network only
// when its run queue empties; until then its wait is its age (wakeProbe).
type surgeCore struct {
	accept, refuse time.Duration // CPU per accepted and per refused submission
	// gcEvery and gcPause stall the core now and then, as a collection
	// does: waits the guard must not mistake for load.
	gcEvery time.Duration
	gcPause time.Duration
}

// surgePhase is a stretch of the trace at one arrival rate.
type surgePhase struct {
	name string
	rate float64 // submissions per second
	d    time.Duration
}

// phaseResult is what a phase did after its first settle time.
type phaseResult struct {
	surgePhase
	goodput    float64       // admitted per second
	ideal      float64       // the most the core could admit without a queue
	maxBacklog time.Duration // the longest queue
	refused    float64       // share of submissions refused
}

const settle = 500 * time.Millisecond

// simulate runs the trace against g and returns each phase's figures.
func (c surgeCore) simulate(g shedder, trace []surgePhase) []phaseResult {
	var (
		now, backlog time.Duration
		probeAt      = time.Duration(-1) // when the byte in flight was sent
		probeReadAt  time.Duration       // when it will be read
		probeWait    = time.Duration(-1) // the wait of the byte read, not yet taken
		owed         float64             // fractional arrivals carried over
		out          []phaseResult
		nextGC       = c.gcEvery
	)
	for _, ph := range trace {
		r := phaseResult{surgePhase: ph, ideal: min(ph.rate, (1-ph.rate*c.refuse.Seconds())/(c.accept-c.refuse).Seconds())}
		r.ideal = max(0, r.ideal)
		var admitted, arrived, refused float64
		for end := now + ph.d; now < end; now += guardInterval {
			// The guard's tick: the probe's wait, as take reports it.
			if probeAt >= 0 && probeReadAt <= now {
				probeWait, probeAt = probeReadAt-probeAt, -1
			}
			var wait time.Duration
			read := probeWait >= 0
			switch {
			case read:
				wait, probeWait = probeWait, -1
			case probeAt >= 0:
				wait = now - probeAt
			}
			if g.tick(wait, read, guardInterval) && probeAt < 0 {
				probeAt, probeReadAt = now, now+backlog
			}
			// The interval's arrivals.
			owed += ph.rate * guardInterval.Seconds()
			n := int(owed)
			owed -= float64(n)
			var work time.Duration
			var a int
			for range n {
				if g.refuses() {
					work += c.refuse
				} else {
					work += c.accept
					a++
				}
			}
			if c.gcEvery > 0 && now >= nextGC {
				work += c.gcPause
				nextGC += c.gcEvery
			}
			backlog = max(0, backlog+work-guardInterval)
			if now >= end-ph.d+settle {
				arrived += float64(n)
				admitted += float64(a)
				refused += float64(n - a)
				r.maxBacklog = max(r.maxBacklog, backlog)
			}
		}
		measured := (ph.d - settle).Seconds()
		r.goodput = admitted / measured
		r.refused = refused / max(1, arrived)
		out = append(out, r)
	}
	return out
}

// judge says what a phase did wrong: goodput below 85 % of the most the
// core could admit, a queue longer than queueBound, or refusals where
// nothing needed refusing.
func judge(rs []phaseResult, queueBound time.Duration) []string {
	var bad []string
	for _, r := range rs {
		if r.goodput < 0.85*r.ideal {
			bad = append(bad, fmt.Sprintf("%s: goodput %.0f/s, below 85%% of the %.0f/s the core can admit", r.name, r.goodput, r.ideal))
		}
		if r.maxBacklog > queueBound {
			bad = append(bad, fmt.Sprintf("%s: the queue grew to %s (bound %s)", r.name, r.maxBacklog, queueBound))
		}
		if r.ideal >= r.rate && r.refused > 0.01 {
			bad = append(bad, fmt.Sprintf("%s: refused %.1f%% with capacity to spare", r.name, 100*r.refused))
		}
	}
	return bad
}

// The surge the guard is for: capacity C = 40,000 accepted submissions a
// second on one core; a quiet start, 1.5 C, 3 C, then back under C.
var (
	surgeTrace = []surgePhase{
		{"0.5 C", 20_000, 2 * time.Second},
		{"1.5 C", 60_000, 5 * time.Second},
		{"3 C", 120_000, 5 * time.Second},
		{"0.8 C after the surge", 32_000, 3 * time.Second},
	}
	// A refusal costs half an accepted submission (loopback HTTP today),
	// or a quarter: at 3 C only the cheaper refusal leaves room for any
	// goodput at all.
	halfCostRefusal    = surgeCore{accept: 25 * time.Microsecond, refuse: 12500 * time.Nanosecond, gcEvery: 300 * time.Millisecond, gcPause: 4 * time.Millisecond}
	quarterCostRefusal = surgeCore{accept: 25 * time.Microsecond, refuse: 6250 * time.Nanosecond, gcEvery: 300 * time.Millisecond, gcPause: 4 * time.Millisecond}
)

// TestCPUGuardKeepsGoodputUnderASurge drives the guard's controller with a
// synthetic surge: it admits at least 85 % of what the core could take
// while refusing the rest, its queue stays within four times its target,
// and it refuses nothing once the surge is over.
func TestCPUGuardKeepsGoodputUnderASurge(t *testing.T) {
	t.Parallel()
	target := 10 * time.Millisecond
	for name, core := range map[string]surgeCore{"refusal at half the cost": halfCostRefusal, "refusal at a quarter": quarterCostRefusal} {
		trace := surgeTrace
		if core == halfCostRefusal {
			trace = []surgePhase{surgeTrace[0], surgeTrace[1], surgeTrace[3]} // 3 C: refusals alone would take 1.5 cores
		}
		rs := core.simulate(newCPUGuard(target), trace)
		for _, r := range rs {
			t.Logf("%s, %s: goodput %.0f/s of %.0f/s possible, refused %.1f%%, longest queue %s", name, r.name, r.goodput, r.ideal, 100*r.refused, r.maxBacklog)
		}
		require.Empty(t, judge(rs, 4*target), name)
	}
}

// The simulation can fail: a guard that refuses nearly everything under
// overload (the share the previous guard reached at twice the capacity)
// fails on goodput, and no guard at all lets the queue grow without end.
func TestSurgeSimulationFailsABadController(t *testing.T) {
	t.Parallel()
	target := 10 * time.Millisecond
	trace := surgeTrace[:2]
	shedsMost := quarterCostRefusal.simulate(&fixedShare{permille: 970, from: 2 * time.Second}, trace)
	require.NotEmpty(t, judge(shedsMost, 4*target), "refusing 97%% leaves most of the core idle")
	none := quarterCostRefusal.simulate(&fixedShare{}, trace)
	require.NotEmpty(t, judge(none, 4*target), "refusing nothing at 1.5 C builds a queue")
}

// fixedShare refuses a fixed share of submissions from a time on.
type fixedShare struct {
	guard    cpuGuard
	permille int64
	from     time.Duration
	now      time.Duration
}

func (f *fixedShare) tick(_ time.Duration, _ bool, dt time.Duration) bool {
	f.now += dt
	if f.now >= f.from {
		f.guard.permille.Store(f.permille)
	}
	return true
}

func (f *fixedShare) refuses() bool { return f.guard.refuses() }
