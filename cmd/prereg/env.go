package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

// Env is what a command gets from the outside: its streams, environment
// and logger. Tests run commands with their own Env.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Logger *slog.Logger
}

// DefaultDatabase is the database prereg uses on the local server or a
// private cluster when DATABASE_URL does not name one.
const DefaultDatabase = "prereg"

// Database connects to the configured database and, with migrate, applies
// the schema; without, it checks the applied migrations' checksums. DATABASE_URL names it; unset, it is database "prereg" on the
// local server (created when missing), else on a private cluster that the
// returned close function stops.
func (e *Env) Database(ctx context.Context, migrate bool) (*pgxpool.Pool, func(), error) {
	cfg, _, err := e.Config(false)
	if err != nil {
		return nil, nil, err
	}
	srv, err := postgres.FindServer(ctx, cfg.DatabaseURL, e.Logger)
	if err != nil {
		return nil, nil, err
	}
	url := srv.URL
	if srv.URL == postgres.LocalURL || srv.Private() {
		url = srv.DatabaseURL(DefaultDatabase)
		if err := postgres.CreateDatabase(ctx, srv.URL, DefaultDatabase); err != nil && !isDuplicateDatabase(err) {
			srv.Close()
			return nil, nil, err
		}
	}
	pool, err := postgres.Open(ctx, url)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	closeAll := func() {
		pool.Close()
		if err := srv.Close(); err != nil {
			e.Logger.Warn("stop private cluster", slog.Any("err", err))
		}
	}
	if migrate {
		_, err = postgres.Migrate(ctx, pool)
	} else {
		// serve and check run on a schema someone else migrated: refuse
		// one whose applied migrations differ from this binary's files.
		err = postgres.VerifySchema(ctx, pool)
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return pool, closeAll, nil
}

func isDuplicateDatabase(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == "42P04"
}

// NATS connects to NATS_URL. Unset, with allowEmbedded (demo, dev, bench)
// it starts an embedded JetStream server in a temporary folder, removed by
// the returned close function; without, it is an error.
func (e *Env) NATS(ctx context.Context, allowEmbedded bool) (*nats.Conn, func(), error) {
	cfg, _, err := e.Config(false)
	if err != nil {
		return nil, nil, err
	}
	if url := cfg.NatsURL; url != "" {
		nc, err := stream.Connect(ctx, url, e.Logger)
		if err != nil {
			return nil, nil, err
		}
		return nc, nc.Close, nil
	}
	if !allowEmbedded {
		return nil, nil, errors.New("NATS_URL is not set: point it at a NATS server >= 2.10 with JetStream (nats-server -js)")
	}
	dir, err := os.MkdirTemp("", "prereg-nats-")
	if err != nil {
		return nil, nil, fmt.Errorf("embedded nats: %w", err)
	}
	emb, err := stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: -1})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	nc, err := emb.Connect()
	if err != nil {
		emb.Shutdown()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return nc, func() {
		nc.Close()
		emb.Shutdown()
		os.RemoveAll(dir)
	}, nil
}

// Config reads and validates the environment's whole configuration
// (config.Settings). Outside demo and dev the keys are required; in them,
// missing keys are made up and the second result names them.
func (e *Env) Config(requireSecrets bool) (config.Config, []string, error) {
	cfg, err := config.FromEnv(e.Getenv, requireSecrets)
	return cfg, cfg.Generated, err
}
