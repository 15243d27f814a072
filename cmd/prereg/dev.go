package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

func init() {
	register(command{name: "dev", summary: "run the whole stack with the simulated world, left running for a browser", run: cmdDev})
}

func cmdDev(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "dev", "[--addr 127.0.0.1:8080] [--keep] [--sync-always] [--open-for 24h]")
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP listen address (intake, admin, metrics)")
	keep := fs.Bool("keep", false, "keep the database when stopping")
	clinics := fs.Int("clinics", 2000, "clinics in the simulated inventory")
	openFor := fs.Duration("open-for", sim.DemoOpenFor, "how long window \"open\" stays open; a few minutes to follow it to its published lottery round (docs/OPERATIONS.md)")
	syncAlways := fs.Bool("sync-always", false, "every intent on disk before its 202: the embedded JetStream fsyncs each write (sync_interval: always) and intake uses group commit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	w, err := world.Start(ctx, world.Options{
		Config: cfg, DatabaseURL: cfg.DatabaseURL, NATSURL: cfg.NatsURL, Logger: env.Logger,
		Addr: *addr, Keep: *keep, Clinics: *clinics, Seed: 1, SyncAlways: *syncAlways, OpenFor: *openFor,
	})
	if err != nil {
		return err
	}
	defer w.Close()
	w.Config.Log(env.Logger)
	c := w.Campaign
	out := env.Stdout
	fmt.Fprintf(out, "prereg dev is ready.\n\n")
	fmt.Fprintf(out, "  citizen page     %s/\n", w.BaseURL)
	fmt.Fprintf(out, "  campaign         %s/v1/campaigns/%s\n", w.BaseURL, c.ID)
	fmt.Fprintf(out, "  submit (JSON)    POST %s/v1/intents\n", w.BaseURL)
	fmt.Fprintf(out, "  console          %s/admin/ (operator or auditor token)\n", w.BaseURL)
	fmt.Fprintf(out, "  dedupe report    %s/admin/v1/reports/dedupe?campaign=%s&format=html (auditor token)\n", w.BaseURL, c.ID)
	fmt.Fprintf(out, "  metrics          %s/metrics\n", w.BaseURL)
	fmt.Fprintf(out, "  health           %s/healthz  %s/readyz\n\n", w.BaseURL, w.BaseURL)
	fmt.Fprintf(out, "Admin tokens (Authorization: Bearer TOKEN):\n")
	for _, t := range w.Config.AdminTokens.Tokens() {
		role, token, _ := strings.Cut(t, ":")
		fmt.Fprintf(out, "  %-9s %s\n", role, token)
	}
	fmt.Fprintf(out, "\nCampaign %q: windows open now for birth-date digits %v (until %s).\n", c.ID, sim.DemoOpenDigits, c.Windows[0].Closes.Format(time.RFC3339))
	fmt.Fprintf(out, "Identity tokens for the simulated providers come from the surge: try\n")
	fmt.Fprintf(out, "  prereg loadgen --target %s --submissions 2000\n", w.BaseURL)
	fmt.Fprintf(out, "Database %s (%s). Stop with Ctrl-C.\n", w.DB.Name, map[bool]string{true: "kept", false: "dropped at exit"}[*keep])
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}
