package bench_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/prereg/prereg/bench"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
)

// asServer, set to 1 in the environment, makes this test binary run one of
// the intake bench's servers, as `prereg bench intake-server` does: the
// intake bench starts its servers in processes of their own.
const asServer = "PREREG_BENCH_TEST_AS_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(asServer) == "1" {
		os.Exit(serveIntake())
	}
	pgtest.VerifyMain(m, append(pgtest.IgnoreFastHTTP(),
		// The load generator's fasthttp client: each host's idle
		// connection cleaner sleeps MaxIdleConnDuration (a minute) before
		// it sees the client closed, and the default dialer's address
		// cache cleaner lives as long as the process.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	)...)
}

// serveIntake is this binary as a bench server: "ready URL", then serve
// until SIGTERM.
func serveIntake() int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	var o bench.IntakeServerOptions
	o.Flags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := bench.RunIntakeServer(ctx, bench.Setup{}, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// setup is a benchmark's Setup on the tests' PostgreSQL and an embedded
// JetStream per connection.
func setup(t *testing.T) bench.Setup {
	t.Helper()
	srv := pgtest.Server(t)
	return bench.Setup{
		DatabaseURL: srv.URL,
		NATS: func(ctx context.Context) (*nats.Conn, func(), error) {
			return stream.Dial(ctx, "", &stream.EmbeddedConfig{StoreDir: t.TempDir(), Port: -1}, nil)
		},
	}
}

// TestIntakeSmall runs the intake benchmark for a moment, each server in
// its own process as always: every mode answers without errors, the
// synced intake groups its intents, and the overload run reports its keys.
// (Figures are not judged here: the benchmark measures, this only runs it.)
func TestIntakeSmall(t *testing.T) {
	t.Setenv(asServer, "1") // the bench's servers are this binary
	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := setup(t)
	s.Stderr = os.Stderr
	res, err := bench.Intake(ctx, s, bench.IntakeOptions{
		ServerCommand: []string{self},
		Duration:      500 * time.Millisecond, Connections: 8, Rounds: 1,
		Overload: time.Second, Overload3x: time.Second, OverloadServer: "overload", OverloadConnections: 64, RefuseFloor: true,
	})
	require.NoError(t, err)
	require.Len(t, res.Modes, len(bench.IntakeModes))
	for _, m := range bench.IntakeModes {
		require.Positive(t, res.Modes[m].RPS, "%s answered", m)
		require.Zero(t, res.Modes[m].Errors, "%s answered 202 every time", m)
	}
	require.Greater(t, res.IntakeSyncedGroupAvg, 1.0, "intake_synced grouped its intents into batches")
	require.Positive(t, res.RatioNaive)
	require.Positive(t, res.OverloadCapacityRPS)
	require.InDelta(t, 1.5*res.OverloadCapacityRPS, res.OverloadRun.IntendedRPS, 1, "the overload run means to offer 1.5 times the capacity")
	require.InDelta(t, min(3*res.OverloadCapacityRPS, 0.9*res.GeneratorCeilingRPS), res.OverloadRun3x.IntendedRPS, 1,
		"the second run means to offer 3 times the capacity, or 90 %% of what the generator can get answered when that is less")
	require.Positive(t, res.OverloadRun.OfferedRPS, "the offered rate is what was sent")
	require.Zero(t, res.OverloadRun.Other5xx)
	require.Zero(t, res.OverloadRun3x.Other5xx)
	require.Equal(t, 64, res.OverloadConnections)
	require.Positive(t, res.OverloadRun.FloorP99MS, "the refusal floor ran at 1.5 times")
	require.Positive(t, res.OverloadRun3x.FloorP99MS, "the refusal floor ran at 3 times")
	j, err := json.Marshal(res)
	require.NoError(t, err)
	var keys map[string]any
	require.NoError(t, json.Unmarshal(j, &keys))
	for _, k := range []string{"overload_capacity_rps", "overload_offered_rps", "overload_goodput_rps", "overload_goodput_ratio",
		"overload_p99_ms", "overload_accepted_p99_ms", "overload_timeouts", "overload_max_rss_mib", "overload_other_5xx",
		"overload_refuse_floor_p99_ms", "overload_answered_rps", "overload_503_share"} {
		require.Contains(t, keys, k)
		if k != "overload_capacity_rps" {
			require.Contains(t, keys, k+"_3x")
		}
	}
}

func TestAllocateSmall(t *testing.T) {
	t.Parallel()
	res, err := bench.Allocate(context.Background(), setup(t), bench.AllocateOptions{
		Registrations: 3000, Clinics: 300, Days: 2, CapacityScale: 1, Chunk: 1000, Seed: 1,
	})
	require.NoError(t, err)
	require.Equal(t, 3000, res.Registrations)
	require.Equal(t, 3000, res.Assigned+res.Unassigned)
	require.Positive(t, res.CopySeconds)
	require.Positive(t, res.RowsWritten)
}

// The verify, dedupe and notify benchmarks at their smallest sizes: each
// runs its role through app and reports what it measured.
func TestVerifyDedupeNotifySmall(t *testing.T) {
	s := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	v, err := bench.Verify(ctx, s, bench.VerifyOptions{Intents: 100, Intents50ms: 100, Concurrency: 16, Latency: 5 * time.Millisecond, Runs: 1})
	require.NoError(t, err)
	require.Positive(t, v.VerifiedPerS0ms)
	require.Positive(t, v.VerifiedPerS50ms)
	require.InDelta(t, 1.0, v.IdPCallsPerIntent, 0.01, "distinct people: one provider call each")

	d, err := bench.Dedupe(ctx, s, bench.DedupeOptions{Submissions: 1000, Shards: 4, Batch: 100, Workers: 2, RebuildRows: 1000, BloomFPR: 0.01, Seed: 1})
	require.NoError(t, err)
	require.Positive(t, d.DecisionsPerS)
	require.Positive(t, d.CopyRowsPerS)
	require.Less(t, d.BloomFPRMeasured, 0.05)

	n, err := bench.Notify(ctx, s, bench.NotifyOptions{Messages: 100, Concurrency: 8, Batch: 32, Loops: 2})
	require.NoError(t, err)
	require.Equal(t, 100, n.HandsetDeliveries, "every message reached its handset")
	require.Zero(t, n.HandsetDuplicates)
}
