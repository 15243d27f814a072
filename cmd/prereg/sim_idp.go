package main

import (
	"context"
	"fmt"
	"log/slog"

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
	var faults sim.Faults
	faults.Flags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	idpSecret, ciSecret, err := simSecrets(env)
	if err != nil {
		return err
	}
	idp := sim.ConfiguredIdP(*name, idpSecret, ciSecret)
	if err := idp.SetFaults(faults); err != nil {
		return usagef("%v", err)
	}
	err = sim.ListenAndServe(ctx, *addr, idp.Handler(), func(addr string) {
		fmt.Fprintf(env.Stdout, "simulated identity provider %q on http://%s (POST /v1/verify, GET /v1/stats, GET|PUT /v1/faults)\n", *name, addr)
		env.Logger.Info("sim idp ready", slog.String("provider", *name), slog.String("addr", addr))
	})
	if err != nil {
		return err
	}
	return writeOutput(env, "json", idp.Stats(), nil)
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
