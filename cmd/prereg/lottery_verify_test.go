package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/scheduler"
)

// A round published after a run verifies with nothing but its file (exit
// 0); a tampered file fails with exit 3 naming the mismatch.
func TestLotteryPublishVerify(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	vars := map[string]string{"DATABASE_URL": db.URL}
	code, out := runCLI(t, vars, "campaign", "load", "../../campaigns/covid-2021-18-49.yaml")
	require.Equal(t, exitOK, code, out)
	addRegistrations(t, db, 120)
	c := []string{"--campaign", "covid-2021-18-49", "--window", "d9"}
	code, out = runCLI(t, vars, append([]string{"lottery", "commit"}, c...)...)
	require.Equal(t, exitOK, code, out)
	code, out = runCLI(t, vars, append([]string{"allocate"}, c...)...)
	require.Equal(t, exitOK, code, out)

	dir := t.TempDir()
	code, out = runCLI(t, vars, append([]string{"lottery", "publish", "--out", dir}, c...)...)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "120 assigned")
	verify := append([]string{"lottery", "verify", "--dir", dir}, c...)
	code, out = runCLI(t, nil, verify...)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "verified")

	code, out = runCLI(t, nil, "lottery", "verify", "--campaign", "covid-2021-18-49", "--dir", dir)
	require.Equal(t, exitUsage, code, out)
	code, out = runCLI(t, nil, "lottery", "verify", "--campaign", "covid-2021-18-49", "--window", "d0", "--dir", dir)
	require.Equal(t, exitFailure, code, "no file for d0: %s", out)

	for _, tc := range []struct {
		name   string
		change func(f *scheduler.RoundFile)
		want   string
	}{
		{"seed", func(f *scheduler.RoundFile) { f.Seed = f.Seed[2:] + f.Seed[:2] }, "seed"},
		{"added registration", func(f *scheduler.RoundFile) {
			f.Input = append(f.Input, scheduler.InputEntry{ID: f.Input[len(f.Input)-1].ID + 1, Region: "11680"})
		}, "input"},
		{"removed registration", func(f *scheduler.RoundFile) { f.Input = f.Input[:len(f.Input)-1] }, "input"},
		{"assignment", func(f *scheduler.RoundFile) { f.Assignments[0].Band = (f.Assignments[0].Band + 1) % 3 }, "registration"},
	} {
		f, err := scheduler.ReadRoundFile(dir, "covid-2021-18-49", "d9")
		require.NoError(t, err)
		tc.change(f)
		bad := t.TempDir()
		_, err = scheduler.WriteRoundFile(bad, f)
		require.NoError(t, err)
		code, out := runCLI(t, nil, append([]string{"lottery", "verify", "--dir", bad}, c...)...)
		require.Equal(t, exitInvariant, code, "%s: %s", tc.name, out)
		require.Contains(t, out, tc.want, tc.name)
	}
}
