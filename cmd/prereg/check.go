package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/check"
)

func init() {
	register(command{name: "check", summary: "verify the invariants (docs/DESIGN.md#invariants) on the database and the stream", run: cmdCheck})
}

func cmdCheck(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "check", "--campaign C [--format text|json] [--settled]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	format := formatFlag(fs)
	settled := fs.Bool("settled", false, "the pipeline is drained: intents still in flight count as lost")
	if err := parseFlags(fs, args, "campaign"); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, false)
	if err != nil {
		return err
	}
	defer closeDB()
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	opts := check.Options{Settled: *settled}
	if cfg.NatsURL != "" {
		nc, closeNATS, err := env.NATS(ctx, false)
		if err != nil {
			return err
		}
		defer closeNATS()
		if opts.JS, err = jetstream.New(nc); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rep, err := check.Run(ctx, pool, *campaignID, opts)
	if errors.Is(err, prereg.ErrCampaignNotFound) {
		return fmt.Errorf("campaign %q not found (load it with 'prereg campaign load FILE')", *campaignID)
	}
	if err != nil {
		return err
	}
	if err := writeOutput(env, *format, rep, func(w io.Writer) { check.PrintReport(w, rep) }); err != nil {
		return err
	}
	if !rep.OK {
		return &invariantError{names: rep.Failed()}
	}
	return nil
}
