package worker

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Dependencies a worker may wait on, as Health names them.
const (
	PostgreSQL = "postgresql"
	JetStream  = "jetstream"
)

// StillDownEvery is how often Health repeats that a dependency is still
// down.
const StillDownEvery = time.Minute

// Status is what a worker is doing.
type Status string

// The statuses of a worker.
const (
	// Starting: made, not yet consuming.
	Starting Status = "starting"
	// Running: consuming and making progress.
	Running Status = "running"
	// Waiting: consuming, but a dependency is down; nothing is lost and
	// nothing is decided until it is back.
	Waiting Status = "waiting"
	// Stopped: no longer consuming.
	Stopped Status = "stopped"
)

// State is a worker's status at one moment.
type State struct {
	Worker string
	Status Status
	// WaitingOn names the dependencies that are down (Waiting only), in
	// order, with the first failure of each outage.
	WaitingOn []Outage
}

// Outage is one dependency that is down.
type Outage struct {
	Dependency string
	Since      time.Time
	Failures   int
}

// Ready reports whether the worker can make progress.
func (s State) Ready() bool { return s.Status == Running }

// String is the state as /readyz prints it: "dedupe: waiting on
// postgresql for 12s (40 failures)".
func (s State) String() string {
	if s.Status != Waiting {
		return s.Worker + ": " + string(s.Status)
	}
	parts := make([]string, len(s.WaitingOn))
	for i, o := range s.WaitingOn {
		parts[i] = fmt.Sprintf("%s since %s (%d failures)", o.Dependency, o.Since.UTC().Format(time.RFC3339), o.Failures)
	}
	return s.Worker + ": waiting on " + strings.Join(parts, ", ")
}

// Health tracks one worker's dependencies. Its methods are safe for
// concurrent use; the zero value is not usable, make one with NewHealth.
type Health struct {
	name string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	status  Status
	outages map[string]*outage
}

type outage struct {
	Outage
	lastErr  error
	reported time.Time // the last "still down"
}

// NewHealth returns the health of the named worker, Starting. Log takes
// the state changes; now is the clock (time.Now when nil).
func NewHealth(name string, log *slog.Logger, now func() time.Time) *Health {
	if now == nil {
		now = time.Now
	}
	return &Health{
		name:    name,
		log:     cmp.Or(log, slog.New(slog.DiscardHandler)),
		now:     now,
		status:  Starting,
		outages: map[string]*outage{},
	}
}

// Name is the worker's name.
func (h *Health) Name() string { return h.name }

// Running marks the worker as consuming.
func (h *Health) Running() { h.set(Running) }

// Stopped marks the worker as no longer consuming.
func (h *Health) Stopped() { h.set(Stopped) }

func (h *Health) set(s Status) {
	h.mu.Lock()
	h.status = s
	h.mu.Unlock()
}

// Down records a failed attempt to use a dependency. The first failure of
// an outage is logged at once; while it lasts, a line every StillDownEvery
// says how many attempts have failed. Err must carry no personal data.
func (h *Health) Down(dependency string, err error) {
	now := h.now()
	h.mu.Lock()
	o, ok := h.outages[dependency]
	if !ok {
		o = &outage{Outage: Outage{Dependency: dependency, Since: now}, reported: now}
		h.outages[dependency] = o
	}
	o.Failures++
	o.lastErr = err
	still := ok && now.Sub(o.reported) >= StillDownEvery
	if still {
		o.reported = now
	}
	n, since := o.Failures, o.Since
	h.mu.Unlock()
	switch {
	case !ok:
		h.log.Warn("dependency down, waiting", slog.String("worker", h.name), slog.String("dependency", dependency), slog.Any("err", err))
	case still:
		h.log.Warn("dependency still down, waiting", slog.String("worker", h.name), slog.String("dependency", dependency),
			slog.Duration("for", now.Sub(since).Round(time.Second)), slog.Int("failures", n), slog.Any("err", err))
	}
}

// Up records a successful use of a dependency, and logs the end of its
// outage if there was one.
func (h *Health) Up(dependency string) {
	h.mu.Lock()
	o, ok := h.outages[dependency]
	if ok {
		delete(h.outages, dependency)
	}
	h.mu.Unlock()
	if ok {
		h.log.Info("dependency back up", slog.String("worker", h.name), slog.String("dependency", dependency),
			slog.Duration("after", h.now().Sub(o.Since).Round(time.Millisecond)), slog.Int("failures", o.Failures))
	}
}

// IsDown reports whether a dependency is in an outage.
func (h *Health) IsDown(dependency string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.outages[dependency]
	return ok
}

// State is the worker's state now: Waiting while a dependency is down.
func (h *Health) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := State{Worker: h.name, Status: h.status}
	if h.status == Running && len(h.outages) > 0 {
		s.Status = Waiting
		for _, o := range h.outages {
			s.WaitingOn = append(s.WaitingOn, o.Outage)
		}
		slices.SortFunc(s.WaitingOn, func(a, b Outage) int { return strings.Compare(a.Dependency, b.Dependency) })
	}
	return s
}
