package main

import (
	"context"
	"io"
	"time"

	"github.com/prereg/prereg/world"
)

func init() {
	register(command{name: "demo", summary: "the whole pipeline on a synthetic surge, checked end to end (exit 0: every invariant held)", run: cmdDemo})
}

func cmdDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "demo", "[--submissions N] [--seed S] [--format text|json] [--keep] [--sync-always]")
	n := fs.Int("submissions", 100_000, "submissions in the surge (about 2.5 per person)")
	seed := fs.Int64("seed", 1, "seed of the population and the surge")
	format := formatFlag(fs)
	keep := fs.Bool("keep", false, "keep the demo's database (its name is printed) instead of dropping it")
	conns := fs.Int("connections", 64, "closed-loop connections of the load generator")
	rate := fs.Float64("rate", 0, "open-loop submissions per second instead of closed-loop")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the whole run takes longer")
	syncAlways := fs.Bool("sync-always", false, "every intent on disk before its 202: the embedded JetStream fsyncs each write (sync_interval: always) and intake uses group commit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return usagef("--submissions must be at least 1")
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	progress := env.Stdout
	if *format == "json" {
		progress = io.Discard
	}
	sum, err := world.Demo(ctx, world.DemoOptions{
		Config: cfg, DatabaseURL: cfg.DatabaseURL, NATSURL: cfg.NatsURL, Logger: env.Logger,
		Submissions: *n, Seed: *seed, Keep: *keep, Connections: *conns, Rate: *rate, SyncAlways: *syncAlways, Progress: progress,
	})
	if err != nil {
		return err
	}
	if err := writeOutput(env, *format, sum, func(w io.Writer) { world.PrintDemo(w, sum) }); err != nil {
		return err
	}
	if !sum.InvariantOK {
		return &invariantError{names: sum.Violations}
	}
	return nil
}
