package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/prereg/prereg/bench"
)

func init() {
	register(command{name: "bench intake", summary: "intake's 202s/s against a bare handler and the naive INSERT-per-request design; overload run", run: benchCommand("bench intake", "[--duration D] [--connections C] [--rounds N] [--overload-duration D] [--format text|json]", benchIntake, bench.PrintIntake)})
	register(command{name: "bench intake-server", summary: "(used by bench intake) one of its servers in a process of its own", run: cmdBenchIntakeServer})
	register(command{name: "bench verify", summary: "verified intents per second through the breaker against the simulated provider, at 0 ms and 50 ms, vs the concurrency ceiling", run: benchCommand("bench verify", "[--intents N] [--intents-50ms N] [--concurrency 64] [--runs 3] [--format text|json]", bench.Verify, bench.PrintVerify)})
	register(command{name: "bench dedupe", summary: "dedupe's decisions per second against a PostgreSQL COPY; Bloom filter size, FPR, rebuild", run: benchCommand("bench dedupe", "[--submissions N] [--format text|json]", bench.Dedupe, bench.PrintDedupe)})
	register(command{name: "bench allocate", summary: "batch allocation of one 10부제 day against a COPY of the rows it writes", run: benchCommand("bench allocate", "[--registrations N] [--format text|json]", bench.Allocate, bench.PrintAllocate)})
	register(command{name: "bench notify", summary: "notify's messages per second from the outbox against the simulated gateway's bare ceiling", run: benchCommand("bench notify", "[--messages N] [--concurrency C] [--format text|json]", bench.Notify, bench.PrintNotify)})
	register(command{name: "bench scale", summary: "the whole pipeline at growing sizes, each stage a process of its own: time, CPU and memory per submission, and how they grow", run: benchCommand("bench scale", "[--sizes 250000,1000000,4000000] [--seed N] [--keep] [--format text|json]", bench.Scale, bench.PrintScale)})
	register(command{name: "bench scale-jetstream", summary: "(used by bench scale) its JetStream server in a process of its own", run: cmdBenchScaleJetStream})
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
		cfg, _, err := env.Config(false)
		if err != nil {
			return err
		}
		s := bench.Setup{
			Logger:      env.Logger,
			DatabaseURL: cfg.DatabaseURL,
			NATS:        func(ctx context.Context) (*nats.Conn, func(), error) { return env.NATS(ctx, true) },
			GC:          cfg.GC,
			Stderr:      env.Stderr,
		}
		// Progress goes to stderr in either format (a run takes minutes);
		// the result, text or JSON, alone to stdout.
		s.Progress = env.Stderr
		res, err := run(ctx, s, o)
		if err != nil {
			return err
		}
		return writeOutput(env, *format, res, func(w io.Writer) { print(w, o, res) })
	}
}

// benchIntake runs the intake bench with this binary's `bench
// intake-server` as its servers.
func benchIntake(ctx context.Context, s bench.Setup, o bench.IntakeOptions) (*bench.IntakeResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	o.ServerCommand = []string{self, "bench", "intake-server"}
	return bench.Intake(ctx, s, o)
}

// cmdBenchIntakeServer runs one of the intake bench's servers until
// SIGTERM, and prints "ready URL" once it serves.
func cmdBenchIntakeServer(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench intake-server", "--mode bare|naive|intake|intake_synced|overload [--database-url URL] [--connections C]")
	var o bench.IntakeServerOptions
	o.Flags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	return bench.RunIntakeServer(ctx, bench.Setup{Logger: env.Logger, GC: cfg.GC}, o, env.Stdout)
}

// cmdBenchScaleJetStream runs the scale bench's JetStream server until
// SIGTERM, and prints "ready URL" once it serves.
func cmdBenchScaleJetStream(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench scale-jetstream", "--store DIR")
	dir := fs.String("store", "", "the file store's folder (required)")
	if err := parseFlags(fs, args, "store"); err != nil {
		return err
	}
	return bench.RunScaleJetStream(ctx, *dir, env.Stdout)
}
