package app

import (
	"runtime/debug"
	"slices"

	"github.com/prereg/prereg/config"
)

// WorkerGCPercent is the garbage collector's target (GOGC) of a process
// that runs no intake role.
//
// The Go runtime collects whenever the heap has grown by GOGC percent
// (default 100) since the last collection, so the collector's CPU grows
// with the allocation rate, whatever the live heap. The workers (verify,
// dedupe, notify) keep a small, steady live heap (Bloom filters, one
// batch) and allocate for every message: at 100 % the collector took a
// sixth of a dedupe worker's CPU, CPU that PostgreSQL wanted on the same
// cores (docs/BENCHMARKS.md, "Dedupe"). At 400 % it collects a quarter as
// often, for at most five times the live heap.
//
// Intake is the other way round (IntakeMemoryLimit).
const WorkerGCPercent = 400

// AllocateGCPercent is the garbage collector's target (GOGC) of the
// allocate command (a one-shot process, not a role), unless GOGC is
// set.
//
// A run holds its round's registrations, their draw and their plan, some
// 90 bytes per registration live at the peak, and allocates many times
// that on its way, mostly in encoding the chunks it writes. At the
// runtime's default target (100) the heap grows to twice the live part
// before a collection, so the garbage is as large as the round. At 50 the
// peak resident size of a run over 300,000 registrations falls from about
// 107 to 89 MiB, for no CPU that can be told apart: PostgreSQL does most
// of a run's work, and the collector marks a small heap.
const AllocateGCPercent = 50

// IntakeMemoryLimit is the soft memory limit (GOMEMLIMIT) of a process
// that runs intake alone, which otherwise collects at the runtime's
// default target (GOGC 100).
//
// Intake's live heap under a surge is mostly the embedded stream's
// duplicate window (every message id of the last 20 s, about 130 bytes
// each) and its connections. At GOGC 100 the heap grows to twice that
// before a collection, which takes the overload benchmark's process past
// its 256 MiB. A lower GOGC (50) keeps it under but collects twice as
// often whatever the heap, and the collector's marking of the window is a
// quarter of intake's CPU. A soft limit costs nothing while the heap is
// small and collects as often as needed near the limit: intake's
// closed-loop rate is about a fifth higher than at GOGC 50, and the
// overload run stays under 256 MiB (docs/BENCHMARKS.md, "The collector").
// A machine fast enough to keep more than about 200 MiB of ids in the
// window (some 70,000 intents a second) needs a larger GOMEMLIMIT, or a
// shorter window: past the limit the runtime collects ever more often.
const IntakeMemoryLimit = 200 << 20

// GCTuning is what TuneGC set; a zero field is left to the runtime (and
// the environment).
type GCTuning struct {
	Percent     int   // GOGC
	MemoryLimit int64 // GOMEMLIMIT, bytes
}

// TuneGC sets the collector for a process that runs roles: GOGC
// WorkerGCPercent without intake, the soft memory limit IntakeMemoryLimit
// for intake alone, nothing for intake with other roles (demo, dev).
// GOGC and GOMEMLIMIT in the environment (gc, read by config) always win.
func TuneGC(roles []Role, gc config.GC) GCTuning {
	var t GCTuning
	switch {
	case slices.Equal(roles, []Role{RoleIntake}):
		if gc.GOMEMLIMIT == "" {
			t.MemoryLimit = IntakeMemoryLimit
			debug.SetMemoryLimit(t.MemoryLimit)
		}
	case slices.Contains(roles, RoleIntake):
		// demo, dev: one process for everything, the runtime's own.
	case gc.GOGC == "":
		t.Percent = WorkerGCPercent
		debug.SetGCPercent(t.Percent)
	}
	return t
}
