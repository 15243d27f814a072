package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
)

// TestBenchIntakeSmall runs the intake benchmark for a moment, each server
// in its own process as always: every mode answers without errors, the
// synced intake groups its intents, and the overload run reports its keys.
// (Figures are not judged here: the benchmark measures, this only runs it.)
func TestBenchIntakeSmall(t *testing.T) {
	t.Setenv(asPrereg, "1") // the bench's servers are this binary
	srv := pgtest.Server(t)
	code, out := runCLI(t, map[string]string{"DATABASE_URL": srv.URL},
		"bench", "intake", "--rounds", "1", "--duration", "500ms", "--connections", "8",
		"--overload-duration", "1s", "--overload-connections", "64", "--format", "json")
	require.Equal(t, exitOK, code, out)
	var res struct {
		Modes map[string]struct {
			RPS    float64 `json:"rps"`
			Errors int64   `json:"errors"`
		} `json:"modes"`
		GroupAvg     float64 `json:"intake_synced_group_avg"`
		OfferedRPS   float64 `json:"overload_offered_rps"`
		Other5xx     int64   `json:"overload_other_5xx"`
		Connections  int     `json:"overload_connections"`
		RatioNaive   float64 `json:"ratio_naive"`
		CapacityRPS  float64 `json:"overload_capacity_rps"`
		RefuseFloorP float64 `json:"overload_refuse_floor_p99_ms"`
	}
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{\n"):]), &res), out)
	for _, m := range []string{"bare", "naive", "intake", "intake_synced"} {
		require.Positive(t, res.Modes[m].RPS, "%s answered", m)
		require.Zero(t, res.Modes[m].Errors, "%s answered 202 every time", m)
	}
	require.Greater(t, res.GroupAvg, 1.0, "intake_synced grouped its intents into batches")
	require.Positive(t, res.RatioNaive)
	require.Positive(t, res.CapacityRPS)
	require.InDelta(t, 2*res.CapacityRPS, res.OfferedRPS, 1, "the overload run offers twice the capacity")
	require.Zero(t, res.Other5xx)
	require.Equal(t, 64, res.Connections)
	require.Positive(t, res.RefuseFloorP, "the refusal floor ran")
}
