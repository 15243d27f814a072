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
	register(command{name: "sim idp", summary: "the simulated identity provider, with fault flags (latency, errors, timeouts, outages, slow bodies)", run: cmdSimIdP})
}

func cmdSimIdP(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "sim idp", "[--name pass] [--addr HOST:PORT] [--latency D [--latency-p99 D]] [--error-rate P [--error-status N]] [--timeout-rate P] [--outage 10s-40s] [--down] [--drip-rate P [--drip-every D]]")
	name := fs.String("name", "pass", "provider name, as in the campaign file; it picks the token secret")
	addr := fs.String("addr", "127.0.0.1:9101", "listen address")
	latency := fs.Duration("latency", 0, "median delay before every answer")
	p99 := fs.Duration("latency-p99", 0, "99th percentile of the delay: log-normal between it and --latency (default: every answer waits --latency)")
	errorRate := fs.Float64("error-rate", 0, "fraction of requests answered --error-status")
	errorStatus := fs.Int("error-status", 503, "status of injected errors (5xx: failures; 4xx: refusals)")
	timeoutRate := fs.Float64("timeout-rate", 0, "fraction of requests never answered (held until the client gives up)")
	down := fs.Bool("down", false, "answer everything 503 until PUT /v1/faults lifts it")
	dripRate := fs.Float64("drip-rate", 0, "fraction of successful answers whose body trickles out a byte at a time")
	dripEvery := fs.Duration("drip-every", 100*time.Millisecond, "pause between the bytes of a dripped body")
	var outages sim.Outages
	fs.Var(&outages, "outage", "answer 503 from FROM to TO after start, e.g. 10s-40s (repeatable, or comma-separated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	faults := sim.Faults{
		Latency: sim.Duration(*latency), LatencyP99: sim.Duration(*p99),
		ErrorRate: *errorRate, ErrorStatus: *errorStatus, TimeoutRate: *timeoutRate,
		Down: *down, Outages: outages, DripRate: *dripRate, DripEvery: sim.Duration(*dripEvery),
	}
	if err := faults.Validate(); err != nil {
		return usagef("%v", err)
	}
	idpSecret, ciSecret, err := simSecrets(env)
	if err != nil {
		return err
	}
	idp := sim.ConfiguredIdP(*name, idpSecret, ciSecret)
	if err := idp.SetFaults(faults); err != nil {
		return usagef("%v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(env.Stdout, "simulated identity provider %q on http://%s (POST /v1/verify, GET /v1/stats, GET|PUT /v1/faults)\n", *name, ln.Addr())
	env.Logger.Info("sim idp ready", slog.String("provider", *name), slog.String("addr", ln.Addr().String()))
	if err := sim.Serve(ctx, srv, ln); err != nil {
		return err
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(idp.Stats())
}

// simSecrets are the simulated providers' secrets, PREREG_SIM_IDP_SECRET
// and PREREG_SIM_CI_SECRET (or their _FILE variants); empty: the demo's.
func simSecrets(env *Env) (idpSecret, ciSecret string, err error) {
	if idpSecret, err = config.Secret(env.Getenv, "PREREG_SIM_IDP_SECRET"); err != nil {
		return "", "", usagef("%v", err)
	}
	if ciSecret, err = config.Secret(env.Getenv, "PREREG_SIM_CI_SECRET"); err != nil {
		return "", "", usagef("%v", err)
	}
	return idpSecret, ciSecret, nil
}
