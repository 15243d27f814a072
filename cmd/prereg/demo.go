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
	var o world.DemoOptions
	o.Flags(fs)
	format := formatFlag(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the whole run takes longer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.Submissions < 1 {
		return usagef("--submissions must be at least 1")
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	o.Config, o.DatabaseURL, o.NATSURL, o.Logger, o.Progress = cfg, cfg.DatabaseURL, cfg.NatsURL, env.Logger, env.Stdout
	if *format == "json" {
		o.Progress = io.Discard
	}
	sum, err := world.Demo(ctx, o)
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
