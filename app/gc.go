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
// Intake is the other way round (IntakeGCPercent).
const WorkerGCPercent = 400

// IntakeGCPercent is the collector's target of a process that runs intake
// alone. Intake's live heap under a surge is mostly the embedded stream's
// duplicate window (every message id of the last 20 s, about 130 bytes
// each) and its connections; at the runtime's default 100 % the heap grows
// to twice that before a collection, which took the overload benchmark's
// process past its 256 MiB (docs/BENCHMARKS.md, "Intake"). At 50 % the
// heap stays within one and a half times the live heap, for a collector
// that runs twice as often.
const IntakeGCPercent = 50

// TuneGC sets the collector's target for a process that runs roles:
// WorkerGCPercent without intake, IntakeGCPercent for intake alone, the
// runtime's default for intake with other roles (demo, dev), and always
// what GOGC says when it is set in the environment. It reports the target
// it set, or false when it left the runtime's own.
func TuneGC(roles []Role, getenv func(string) string) (int, bool) {
	pct := WorkerGCPercent
	switch {
	case getenv("GOGC") != "":
		return 0, false
	case slices.Equal(roles, []Role{RoleIntake}):
		pct = IntakeGCPercent
	case slices.Contains(roles, RoleIntake):
		return 0, false
	}
	debug.SetGCPercent(pct)
	return pct, true
}
