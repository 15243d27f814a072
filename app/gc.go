package app

import (
	"runtime/debug"
	"slices"
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
// Intake keeps the runtime's default: under overload its memory
// (connections, publishes in flight, the stream's duplicate window) is
// held under a bound, and four times the garbage would break it.
const WorkerGCPercent = 400

// TuneGC sets the collector's target for a process that runs roles:
// WorkerGCPercent without intake, unless GOGC is set in the environment,
// which always wins. It reports the target it set, or false when it left
// the runtime's own.
func TuneGC(roles []Role, getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" || slices.Contains(roles, RoleIntake) {
		return 0, false
	}
	debug.SetGCPercent(WorkerGCPercent)
	return WorkerGCPercent, true
}
