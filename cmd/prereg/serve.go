package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prereg/prereg/app"
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
	opts := app.Options{Roles: rs, Logger: env.Logger, Pool: pool, NC: nc}
	opts.Configure(cfg)
	return app.Serve(ctx, opts, *addr, *grace, nil)
}
