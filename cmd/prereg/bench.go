package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/prereg/prereg/bench"
)

func init() {
	register(command{name: "bench intake", summary: "intake's 202s/s against a bare handler and the naive INSERT-per-request design; overload run", run: cmdBenchIntake})
	register(command{name: "bench intake-server", summary: "(used by bench intake) one of its servers in a process of its own", run: cmdBenchIntakeServer})
	register(command{name: "bench verify", summary: "verified intents per second through the breaker against the simulated provider, at 0 ms and 50 ms, vs the concurrency ceiling", run: benchCommand("bench verify", "[--intents N] [--intents-50ms N] [--concurrency 64] [--runs 3] [--format text|json]", bench.Verify, bench.PrintVerify)})
	register(command{name: "bench dedupe", summary: "dedupe's decisions per second against a PostgreSQL COPY; Bloom filter size, FPR, rebuild", run: benchCommand("bench dedupe", "[--submissions N] [--format text|json]", bench.Dedupe,
		func(w io.Writer, _ bench.DedupeOptions, res *bench.DedupeResult) { bench.PrintDedupe(w, res) })})
	register(command{name: "bench allocate", summary: "batch allocation of one 10부제 day against a COPY of the rows it writes", run: benchCommand("bench allocate", "[--registrations N] [--format text|json]", bench.Allocate, bench.PrintAllocate)})
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

// benchOptions are a benchmark's options: they define their flags and
// refuse values the benchmark cannot run with.
type benchOptions[O any] interface {
	*O
	Flags(*flag.FlagSet)
	Check() error
}

// benchCommand is a `prereg bench` command: flags, the check, the run
// and its output, text or JSON.
func benchCommand[O any, P benchOptions[O], R any](name, usage string, run func(context.Context, bench.Setup, O) (R, error), print func(io.Writer, O, R)) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		fs := newFlags(env, name, usage)
		var o O
		P(&o).Flags(fs)
		format := formatFlag(fs)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := P(&o).Check(); err != nil {
			return usagef("%v", err)
		}
		s, err := benchSetup(env, *format)
		if err != nil {
			return err
		}
		res, err := run(ctx, s, o)
		if err != nil {
			return err
		}
		return writeOutput(env, *format, res, func(w io.Writer) { print(w, o, res) })
	}
}

func cmdBenchIntake(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench intake", "[--duration D] [--connections C] [--rounds N] [--overload-duration D] [--format text|json]")
	var o bench.IntakeOptions
	o.Flags(fs)
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.Check(); err != nil {
		return usagef("%v", err)
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
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

func cmdBenchNotify(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench notify", "[--messages N] [--concurrency C] [--format text|json]")
	var o bench.NotifyOptions
	o.Flags(fs)
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.Check(); err != nil {
		return usagef("%v", err)
	}
	s, err := benchSetup(env, *format)
	if err != nil {
		return err
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
