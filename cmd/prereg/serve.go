package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
)

func init() {
	register(command{name: "serve", summary: "run production roles: intake, verify, dedupe, notify, admin (any subset)", run: cmdServe})
}

func cmdServe(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "serve", "--roles intake,verify,dedupe,notify,admin [--addr :8080]")
	roles := fs.String("roles", "all", "comma-separated roles to run in this process, or all")
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP listen address")
	grace := fs.Duration("shutdown-grace", 20*time.Second, "how long a soft stop may take before a hard stop")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rs, err := app.ParseRoles(*roles)
	if err != nil {
		return usagef("%v", err)
	}
	cfg, _, err := env.Config(true)
	if err != nil {
		return err
	}
	cfg.Log(env.Logger)
	if cfg.NatsURL == "" {
		return errors.New("NATS_URL is not set: serve needs a NATS server >= 2.10 with JetStream (prereg demo and dev embed one)")
	}
	pool, closeDB, err := env.Database(ctx, false)
	if err != nil {
		return err
	}
	defer closeDB()
	nc, closeNATS, err := env.NATS(ctx, false)
	if err != nil {
		return err
	}
	defer closeNATS()
	if gc := app.TuneGC(rs, cfg.GC); gc.Percent != 0 {
		env.Logger.Info("garbage collector target set for these roles (GOGC unset)", slog.Int("gogc", gc.Percent))
	} else if gc.MemoryLimit != 0 {
		env.Logger.Info("soft memory limit set for intake (GOMEMLIMIT unset)", slog.Int64("gomemlimit_bytes", gc.MemoryLimit))
	}
	opts := app.Options{Roles: rs, Logger: env.Logger, Pool: pool, NC: nc, Config: cfg}
	roleOptions(&opts, cfg)
	return serveSystem(ctx, env, opts, *addr, *grace, nil)
}

// serveSystem starts a System and its HTTP server on addr, and on ctx's
// end stops softly (HTTP drained, in-flight work finished) within grace,
// then hard. ready, when set, is called with the listening address once the
// system is up.
func serveSystem(ctx context.Context, env *Env, opts app.Options, addr string, grace time.Duration, ready func(string, *app.System)) error {
	sys, err := app.New(opts)
	if err != nil {
		return err
	}
	if err := sys.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sys.Stop()
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := sys.NewServer(env.Logger)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	names := make([]string, len(opts.Roles))
	for i, r := range opts.Roles {
		names[i] = string(r)
	}
	env.Logger.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("roles", strings.Join(names, ",")))
	if ready != nil {
		ready(ln.Addr().String(), sys)
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	env.Logger.Info("stopping: draining HTTP, then finishing work in flight", slog.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if shutErr := srv.Shutdown(sctx); shutErr != nil {
		_ = srv.Close()
	}
	done := make(chan struct{})
	go func() { sys.Stop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		env.Logger.Warn("soft stop took longer than the grace period; stopping hard")
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// roleOptions fills the roles' options that the configuration sets.
func roleOptions(opts *app.Options, cfg config.Config) {
	opts.Intake.TrustedProxies, opts.Intake.IPv6Prefix = cfg.TrustedProxies, cfg.IPv6Prefix
	// Part of the submitted stream's declaration, so every process sets
	// it, whatever its roles.
	opts.Stream.AtomicBatches, opts.Intake.GroupCommit = cfg.GroupCommit, cfg.GroupCommit
	opts.Verify.ProviderCallsPerPrefix = cfg.Verify.CallsPerPrefix
	opts.Verify.ProviderCallsPerCampaign = cfg.Verify.CallsPerCampaign
	if slices.Contains(opts.Roles, app.RoleDedupe) {
		opts.Dedupe.Shards = cfg.Dedupe.Shards
		opts.Dedupe.Workers = cfg.Dedupe.Workers
		opts.Dedupe.BatchSize = cfg.Dedupe.BatchSize
	}
	if slices.Contains(opts.Roles, app.RoleNotify) || slices.Contains(opts.Roles, app.RoleAdmin) {
		opts.Notify.GatewayURL = cfg.SMS.URL
		opts.Notify.WebhookSecret = cfg.SMS.Secret
		opts.Notify.Rate = cfg.SMS.Rate
		opts.Notify.Concurrency = cfg.SMS.Concurrency
	}
}
