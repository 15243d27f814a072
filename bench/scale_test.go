package bench_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/bench"
)

// buildPrereg builds the prereg binary the scale benchmark runs its stages
// as.
func buildPrereg(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "prereg")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/prereg/prereg/cmd/prereg").CombinedOutput()
	require.NoError(tb, err, "go build ./cmd/prereg:\n%s", out)
	return bin
}

// TestScaleSmall runs the scale benchmark at two tiny sizes: each stage in
// its process reports time, CPU and memory, the stages' seconds make up
// the run's, and the JSON has the keys docs/BENCHMARKS.md names.
func TestScaleSmall(t *testing.T) {
	bin := buildPrereg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := bench.Scale(ctx, setup(t), bench.ScaleOptions{
		ServerCommand: []string{bin}, Sizes: []int{1500, 3000}, PerPerson: 2.5, Seed: 1,
		Connections: 16, StageTimeout: time.Minute,
	})
	require.NoError(t, err)
	require.Len(t, res.Scale, 2)
	for _, run := range res.Scale {
		require.Positive(t, run.Accepted)
		require.Positive(t, run.Registrations)
		require.Positive(t, run.Appointments)
		require.Positive(t, run.EndToEndPerS)
		require.Positive(t, run.CPUSPer1k)
		require.Positive(t, run.PGCPUSPer1k, "the PostgreSQL backends' CPU was read")
		require.Positive(t, run.JSCPUSPer1k, "the JetStream server's CPU was read")
		require.Positive(t, run.PeakRSSMiB)
		require.Positive(t, run.JSPeakRSSMiB)
		require.Contains(t, []string{"server", "benchmark"}, run.Autovacuum)
		require.Positive(t, run.WorldPeakRSSMiB)
		require.Positive(t, run.PGBytesPerSubmission)
		require.Positive(t, run.JSBytesPerSubmission)
		var stageSeconds, stageCPU float64
		for _, st := range []bench.ScaleStage{run.Stages.Intake, run.Stages.Verify, run.Stages.Dedupe, run.Stages.Allocate, run.Stages.Notify} {
			require.Positive(t, st.Seconds)
			require.Positive(t, st.CPUSPer1k)
			require.Positive(t, st.PeakRSSMiB)
			stageSeconds += st.Seconds
			stageCPU += st.CPUSPer1k
		}
		// The run's wall time is its stages' plus the moments between
		// them (reading the streams' sizes).
		require.LessOrEqual(t, stageSeconds, run.Seconds+0.3, "stages within the run")
		require.Greater(t, stageSeconds, 0.8*run.Seconds, "the stages make up the run")
		require.InDelta(t, stageCPU, run.CPUSPer1k, 0.01, "the run's CPU is its stages'")
	}
	require.Positive(t, res.CostGrowth)
	require.Positive(t, res.RSSGrowth)

	b, err := json.Marshal(res)
	require.NoError(t, err)
	var doc struct {
		Scale []map[string]json.RawMessage `json:"scale"`
		// Pointers: a missing key stays nil.
		CostGrowth *float64 `json:"cost_growth"`
		RSSGrowth  *float64 `json:"rss_growth"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	require.NotNil(t, doc.CostGrowth)
	require.NotNil(t, doc.RSSGrowth)
	for _, key := range []string{"submissions", "end_to_end_per_s", "cpu_s_per_1k", "peak_rss_mib", "pg_bytes_per_submission", "js_bytes_per_submission", "stages"} {
		require.Contains(t, doc.Scale[0], key)
	}
	var stages map[string]map[string]float64
	require.NoError(t, json.Unmarshal(doc.Scale[0]["stages"], &stages))
	for _, name := range bench.ScaleStageNames {
		require.Contains(t, stages, name)
		require.Contains(t, stages[name], "seconds")
		require.Contains(t, stages[name], "cpu_s_per_1k")
	}
}
