package app

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	noEnv := func(string) string { return "" }

	for _, tc := range []struct {
		name   string
		roles  []Role
		getenv func(string) string
		want   int // the collector's target afterwards
	}{
		{"workers only", []Role{RoleVerify, RoleDedupe, RoleNotify}, noEnv, WorkerGCPercent},
		{"intake alone", []Role{RoleIntake}, noEnv, IntakeGCPercent},
		{"intake among them", []Role{RoleDedupe, RoleIntake}, noEnv, 100},
		{"all roles", AllRoles, noEnv, 100},
		{"GOGC set, intake", []Role{RoleIntake}, func(k string) string {
			if k == "GOGC" {
				return "150"
			}
			return ""
		}, 100},
		{"GOGC set", []Role{RoleDedupe}, func(k string) string {
			if k == "GOGC" {
				return "150"
			}
			return ""
		}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			got, set := TuneGC(tc.roles, tc.getenv)
			now := debug.SetGCPercent(100)
			if now != tc.want {
				t.Fatalf("collector target = %d, want %d", now, tc.want)
			}
			if set != (tc.want != 100) || (set && got != tc.want) {
				t.Fatalf("TuneGC = %d, %v; target now %d", got, set, now)
			}
		})
	}
}
