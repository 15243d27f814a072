package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/sim"
)

func init() {
	register(command{name: "sim sms", summary: "the simulated SMS gateway (idempotency, rate limit, signed delivery reports) with fault flags", run: cmdSimSMS})
}

func cmdSimSMS(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "sim sms", "[--addr HOST:PORT] [--report-url URL] [--rate R] [--no-idempotency] [--down] [--error-rate P] [--latency D]")
	addr := fs.String("addr", "127.0.0.1:9201", "listen address")
	var cfg sim.GatewayConfig
	cfg.Flags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return usagef("%v", err)
	}
	secret, err := config.Secret(env.Getenv, "PREREG_SMS_SECRET")
	if err != nil {
		return usagef("%v", err)
	}
	if cfg.ReportURL != "" && secret == "" {
		return usagef("--report-url needs PREREG_SMS_SECRET (or PREREG_SMS_SECRET_FILE) to sign the reports, the same secret prereg serve verifies them with")
	}
	cfg.ReportSecret, cfg.Logger = []byte(secret), env.Logger.With("sim", "sms")
	g := sim.NewGateway(cfg)
	defer g.Close()
	err = sim.ListenAndServe(ctx, *addr, g.Handler(), func(addr string) {
		fmt.Fprintf(env.Stdout, "simulated SMS gateway on http://%s (POST /v1/messages, GET /v1/stats, PUT /v1/faults)\n", addr)
		env.Logger.Info("sim sms ready", slog.String("addr", addr), slog.Bool("idempotency", !cfg.IgnoreIdempotency), slog.Float64("rate", cfg.Rate))
	})
	if err != nil {
		return err
	}
	return writeOutput(env, "json", g.Stats(), nil)
}
