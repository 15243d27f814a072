package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/prereg/prereg/bench"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/sim"
)

func init() {
	register(command{name: "bench intake", summary: "intake's 202s/s against a bare handler and the naive INSERT-per-request design; overload run", run: cmdBenchIntake})
	register(command{name: "bench intake-server", summary: "(used by bench intake) one of its servers in a process of its own", run: cmdBenchIntakeServer})
	register(command{name: "bench verify", summary: "verified intents per second through the breaker against the simulated provider, at 0 ms and 50 ms, vs the concurrency ceiling", run: cmdBenchVerify})
	register(command{name: "bench dedupe", summary: "dedupe's decisions per second against a PostgreSQL COPY; Bloom filter size, FPR, rebuild", run: cmdBenchDedupe})
	register(command{name: "bench allocate", summary: "batch allocation of one 10부제 day against a COPY of the rows it writes", run: cmdBenchAllocate})
	register(command{name: "bench notify", summary: "notify's messages per second from the outbox against the simulated gateway's bare ceiling", run: cmdBenchNotify})
}

// benchSetup is what the benchmarks take from the environment; progress
// goes to stderr in text format only, so that JSON output stays clean.
func benchSetup(env *Env, format string) (bench.Setup, error) {
	cfg, _, err := env.Config(false)
	if err != nil {
		return bench.Setup{}, err
	}
	s := bench.Setup{
		Logger:      env.Logger,
		DatabaseURL: cfg.DatabaseURL,
		NATS:        func(ctx context.Context) (*nats.Conn, func(), error) { return env.NATS(ctx, true) },
		GC:          cfg.GC,
	}
	if format == "text" {
		s.Progress = env.Stderr
	}
	return s, nil
}

func cmdBenchIntake(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench intake", "[--duration D] [--connections C] [--rounds N] [--overload-duration D] [--format text|json]")
	var o bench.IntakeOptions
	fs.DurationVar(&o.Duration, "duration", 4e9, "measured time of each mode in each round")
	fs.IntVar(&o.Connections, "connections", 64, "closed-loop connections of the load generator")
	fs.IntVar(&o.Rounds, "rounds", 5, "rounds; each runs bare, naive, intake, intake_synced in turn")
	fs.DurationVar(&o.Overload, "overload-duration", 60e9, "open-loop overload run at twice the measured capacity (0 skips it)")
	format := formatFlag(fs)
	fs.StringVar(&o.OverloadServer, "overload-server", "overload", "the server of the overload run: overload (intake), bare (the generator's own limit), or refuse (how many submissions one core can refuse: the ceiling of any shedding inside the process)")
	fs.StringVar(&o.ProfileDir, "profile-dir", "", "write a CPU profile of each server to DIR/MODE.prof and its live heap at the end to DIR/MODE.heap.prof")
	fs.BoolVar(&o.BareFasthttp, "bare-fasthttp", false, "also run the bare handler on fasthttp (the server intake runs on) in every round, and print intake's ratio to it")
	fs.IntVar(&o.OverloadConnections, "overload-connections", 2048, "connections of the overload run's open-loop generator (each carries one request at a time)")
	fs.Float64Var(&o.OverloadRate, "overload-rate", 0, "offer this many requests/s in the overload run instead of twice the measured capacity (0: twice the capacity), to compare settings at one rate")
	fs.BoolVar(&o.RefuseFloor, "refuse-floor", true, "after the overload run, offer the same rate to intake refusing every submission: the latency floor of this machine and generator at that rate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
	}
	if o.OverloadServer != "overload" && o.OverloadServer != "bare" && o.OverloadServer != "refuse" {
		return usagef("--overload-server %q: want overload, bare or refuse", o.OverloadServer)
	}
	if o.Duration < 5e8 || o.Connections < 1 || o.OverloadConnections < 1 || o.OverloadRate < 0 || o.Rounds < 0 || o.Overload < 0 {
		return usagef("want --duration >= 500ms, --connections >= 1, --overload-connections >= 1, --overload-rate >= 0, --rounds >= 0 (0: overload run only), --overload-duration >= 0")
	}
	// The servers are this binary: `prereg bench intake-server`.
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench server: %w", err)
	}
	o.ServerCommand, o.ServerStderr = []string{self, "bench", "intake-server"}, env.Stderr
	res, modes, err := bench.Intake(ctx, s, o)
	if err != nil {
		return err
	}
	return writeOutput(env, *format, res, func(w io.Writer) { bench.PrintIntake(w, res, modes, o.Overload) })
}

// cmdBenchIntakeServer runs one of the intake bench's servers until
// SIGTERM, and prints "ready URL" once it serves.
func cmdBenchIntakeServer(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench intake-server", "--mode bare|naive|intake|intake_synced|overload [--database-url URL] [--connections C]")
	mode := fs.String("mode", "overload", "which server: bare, bare_fasthttp, naive, intake, intake_synced, overload (intake with every guard on) or refuse")
	dbURL := fs.String("database-url", "", "the bench's database (bench intake creates it)")
	conns := fs.Int("connections", 64, "the naive design's pool size")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server's whole life to this file")
	heapProfile := fs.String("heapprofile", "", "write the server's live heap to this file when it is told to stop")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfile, err := bench.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	srv, err := bench.ServeIntake(ctx, bench.Setup{Logger: env.Logger, GC: cfg.GC}, *mode, *dbURL, *conns)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintln(env.Stdout, "ready "+srv.URL)
	<-ctx.Done()
	return bench.WriteHeapProfile(*heapProfile)
}

func cmdBenchVerify(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench verify", "[--intents N] [--intents-50ms N] [--concurrency 64] [--runs 3] [--format text|json]")
	var o bench.VerifyOptions
	fs.IntVar(&o.Intents, "intents", 20_000, "intents verified in the 0 ms phase")
	fs.IntVar(&o.Intents50ms, "intents-50ms", 12_800, "intents verified in the 50 ms phase (10 s at the ceiling)")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "the provider's concurrency limit (bulkhead)")
	fs.DurationVar(&o.Latency, "latency", 5e7, "the provider's latency in the second phase")
	fs.IntVar(&o.Runs, "runs", 3, "runs of each phase; the medians are reported")
	format := formatFlag(fs)
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole bench to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
	}
	if o.Intents < 1 || o.Intents50ms < 1 || o.Concurrency < 1 || o.Runs < 1 || o.Latency <= 0 {
		return usagef("want positive --intents, --intents-50ms, --concurrency, --runs and --latency")
	}
	res, err := bench.Verify(ctx, s, o)
	if err != nil {
		return err
	}
	return writeOutput(env, *format, res, func(w io.Writer) { bench.PrintVerify(w, o, res) })
}

func cmdBenchDedupe(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench dedupe", "[--submissions N] [--format text|json]")
	var o bench.DedupeOptions
	fs.IntVar(&o.Submissions, "submissions", bench.FullDedupeSize, "verified submissions to decide (about two minutes on 2 cores; 200000 for a quick look)")
	fs.IntVar(&o.Shards, "shards", 16, "identity shards")
	fs.IntVar(&o.Batch, "batch", 1000, "dedupe batch size")
	fs.IntVar(&o.Workers, "workers", 4, "dedupe workers, each owning a disjoint set of shards")
	fs.IntVar(&o.RebuildRows, "rebuild-rows", 2_000_000, "registrations for the Bloom rebuild measurement")
	fs.IntVar(&o.BloomPeople, "bloom-people", 0, "people the Bloom filters are sized for (default: the bench's people)")
	fs.Float64Var(&o.BloomFPR, "bloom-fpr", campaign.DefaultBloomFPRate, "Bloom filters' target false-positive rate")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the synthetic mix")
	format := formatFlag(fs)
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the deciding phase to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
	}
	if o.Submissions < 1000 || o.Shards < 1 || o.Batch < 1 || o.Workers < 1 || o.Workers > o.Shards || o.RebuildRows < 1 || o.BloomFPR <= 0 || o.BloomFPR >= 1 {
		return usagef("want --submissions >= 1000 and positive --shards, --batch, --rebuild-rows, 0 < --bloom-fpr < 1")
	}
	res, err := bench.Dedupe(ctx, s, o)
	if err != nil {
		return err
	}
	return writeOutput(env, *format, res, func(w io.Writer) { bench.PrintDedupe(w, res) })
}

func cmdBenchAllocate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench allocate", "[--registrations N] [--format text|json]")
	var o bench.AllocateOptions
	fs.IntVar(&o.Registrations, "registrations", bench.DefaultAllocateSize, fmt.Sprintf("registrations of the window (one full day: %d, about ten times as long)", bench.FullAllocateSize))
	fs.IntVar(&o.Clinics, "clinics", sim.DefaultClinics, "clinics of the generated inventory")
	fs.IntVar(&o.Days, "days", 14, "days of the schedule")
	fs.Float64Var(&o.CapacityScale, "capacity-scale", 1, "multiplies every clinic's capacity (1: about 9.8 million places over 14 days)")
	fs.IntVar(&o.Chunk, "chunk", scheduler.DefaultChunkSize, "registrations written per transaction")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the inventory and the registrations")
	format := formatFlag(fs)
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench database for inspection (its name goes to stderr)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
	}
	if o.Registrations < 1 || o.Clinics < 1 || o.Days < 1 || o.CapacityScale < 0 || o.Chunk < 1 {
		return usagef("want positive --registrations, --clinics, --days, --chunk and --capacity-scale >= 0")
	}
	res, err := bench.Allocate(ctx, s, o)
	if err != nil {
		return err
	}
	if res.DatabaseURL != "" {
		fmt.Fprintf(env.Stderr, "bench database: %s\n", res.DatabaseURL)
	}
	return writeOutput(env, *format, res, func(w io.Writer) { bench.PrintAllocate(w, o, res) })
}

func cmdBenchNotify(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench notify", "[--messages N] [--concurrency C] [--format text|json]")
	var o bench.NotifyOptions
	fs.IntVar(&o.Messages, "messages", 100_000, "outbox rows to drain")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "sends in flight, for notify and for the ceiling loop alike")
	fs.IntVar(&o.Batch, "batch", 512, "rows each claim loop claims at once")
	fs.IntVar(&o.Loops, "loops", 4, "notify's claim loops (they share --concurrency)")
	format := formatFlag(fs)
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the notify run to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
	}
	if o.Messages < 100 || o.Concurrency < 1 || o.Batch < 1 || o.Loops < 1 {
		return usagef("want --messages >= 100 and positive --concurrency, --batch, --loops")
	}
	res, err := bench.Notify(ctx, s, o)
	if err != nil {
		return err
	}
	if *format == "json" {
		// The notify result is written on one line.
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	bench.PrintNotify(env.Stdout, res)
	return nil
}
