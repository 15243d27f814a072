package main

import (
	"context"
	"fmt"

	"github.com/prereg/prereg/world"
)

func init() {
	register(command{name: "dev", summary: "run the whole stack with the simulated world, left running for a browser", run: cmdDev})
}

func cmdDev(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "dev", "[--addr 127.0.0.1:8080] [--keep] [--sync-always] [--open-for 24h]")
	o := world.Options{Seed: 1}
	o.Flags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	o.Config, o.DatabaseURL, o.NATSURL, o.Logger = cfg, cfg.DatabaseURL, cfg.NatsURL, env.Logger
	w, err := world.Start(ctx, o)
	if err != nil {
		return err
	}
	defer w.Close()
	w.Config.Log(env.Logger)
	w.PrintReady(env.Stdout)
	<-ctx.Done()
	fmt.Fprintln(env.Stdout, "stopping")
	return nil
}
