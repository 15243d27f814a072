package app

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/prereg/prereg/config"
)

func TestTuneGC(t *testing.T) {
	prevPct, prevLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(prevPct); debug.SetMemoryLimit(prevLimit) })
	var noEnv config.GC

	for _, tc := range []struct {
		name      string
		roles     []Role
		gc        config.GC
		wantPct   int   // the collector's target afterwards
		wantLimit int64 // the soft memory limit afterwards
	}{
		{"workers only", []Role{RoleVerify, RoleDedupe, RoleNotify}, noEnv, WorkerGCPercent, math.MaxInt64},
		{"intake alone", []Role{RoleIntake}, noEnv, 100, IntakeMemoryLimit},
		{"intake among them", []Role{RoleDedupe, RoleIntake}, noEnv, 100, math.MaxInt64},
		{"all roles", AllRoles, noEnv, 100, math.MaxInt64},
		{"GOGC set, intake", []Role{RoleIntake}, config.GC{GOGC: "150"}, 100, IntakeMemoryLimit},
		{"GOMEMLIMIT set, intake", []Role{RoleIntake}, config.GC{GOMEMLIMIT: "1GiB"}, 100, math.MaxInt64},
		{"GOGC set", []Role{RoleDedupe}, config.GC{GOGC: "150"}, 100, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			got := TuneGC(tc.roles, tc.gc)
			pct, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
			if pct != tc.wantPct || limit != tc.wantLimit {
				t.Fatalf("collector target %d, memory limit %d; want %d, %d", pct, limit, tc.wantPct, tc.wantLimit)
			}
			want := GCTuning{}
			if tc.wantPct != 100 {
				want.Percent = tc.wantPct
			}
			if tc.wantLimit != math.MaxInt64 {
				want.MemoryLimit = tc.wantLimit
			}
			if got != want {
				t.Fatalf("TuneGC = %+v, want %+v", got, want)
			}
		})
	}
}
