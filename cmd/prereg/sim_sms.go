package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/sim"
)

func init() {
	register(command{name: "sim sms", summary: "the simulated SMS gateway (idempotency, rate limit, signed delivery reports) with fault flags", run: cmdSimSMS})
}

func cmdSimSMS(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "sim sms", "[--addr HOST:PORT] [--report-url URL] [--rate R] [--no-idempotency] [--down] [--error-rate P] [--latency D]")
	addr := fs.String("addr", "127.0.0.1:9201", "listen address")
	reportURL := fs.String("report-url", "", "delivery-report webhook, e.g. http://127.0.0.1:8081/v1/sms/reports (signed with PREREG_SMS_SECRET); none when empty")
	reportDelay := fs.Duration("report-delay", 100*time.Millisecond, "delay between delivery and its report")
	rate := fs.Float64("rate", 0, "the account's limit in messages per second, answered 429 above it (0: none)")
	burst := fs.Int("burst", 1, "the rate limit's bucket")
	noIdem := fs.Bool("no-idempotency", false, "ignore Idempotency-Key: every request is sent (fault: a gateway without de-duplication)")
	down := fs.Bool("down", false, "answer every send 503 (fault: an outage; lift it with PUT /v1/faults {\"down\":false})")
	errorRate := fs.Float64("error-rate", 0, "fraction of sends answered 500 (fault)")
	latency := fs.Duration("latency", 0, "delay before every answer (fault)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rate < 0 || *burst < 1 || *errorRate < 0 || *errorRate > 1 || *latency < 0 {
		return usagef("want --rate >= 0, --burst >= 1, 0 <= --error-rate <= 1, --latency >= 0")
	}
	secret, err := config.Secret(env.Getenv, "PREREG_SMS_SECRET")
	if err != nil {
		return usagef("%v", err)
	}
	if *reportURL != "" && secret == "" {
		return usagef("--report-url needs PREREG_SMS_SECRET (or PREREG_SMS_SECRET_FILE) to sign the reports, the same secret prereg serve verifies them with")
	}
	g := sim.NewGateway(sim.GatewayConfig{
		IgnoreIdempotency: *noIdem,
		Rate:              *rate,
		Burst:             *burst,
		ReportURL:         *reportURL,
		ReportSecret:      []byte(secret),
		ReportDelay:       *reportDelay,
		Faults:            sim.SMSFaults{Down: *down, ErrorRate: *errorRate, Latency: sim.Duration(*latency)},
		Logger:            env.Logger.With("sim", "sms"),
	})
	defer g.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(env.Stdout, "simulated SMS gateway on http://%s (POST /v1/messages, GET /v1/stats, PUT /v1/faults)\n", ln.Addr())
	env.Logger.Info("sim sms ready", slog.String("addr", ln.Addr().String()), slog.Bool("idempotency", !*noIdem), slog.Float64("rate", *rate))
	if err := sim.Serve(ctx, srv, ln); err != nil {
		return err
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(g.Stats())
}
