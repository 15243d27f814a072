package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

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

// scratchDB is a fresh, migrated database of its own for one run of a
// command (demo, dev, benchmarks) on the configured server.
type scratchDB struct {
	Server *postgres.Server
	Name   string
	URL    string
	Pool   *pgxpool.Pool
	// Keep leaves the database in place at Close (its URL is printed by
	// the command).
	Keep bool
	log  *slog.Logger
}

// ScratchDatabase creates database prefix_<random> on the server that
// DATABASE_URL names (or the local server, or a private cluster), applies
// the schema and opens a pool. Close drops it (unless Keep) and stops a
// private cluster.
func (e *Env) ScratchDatabase(ctx context.Context, prefix string) (*scratchDB, error) {
	cfg, _, err := e.Config(false)
	if err != nil {
		return nil, err
	}
	srv, err := postgres.FindServer(ctx, cfg.DatabaseURL, e.Logger)
	if err != nil {
		return nil, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := &scratchDB{Server: srv, Name: prefix + "_" + hex.EncodeToString(b[:]), log: e.Logger}
	db.URL = srv.DatabaseURL(db.Name)
	if err := postgres.CreateDatabase(ctx, srv.URL, db.Name); err != nil {
		srv.Close()
		return nil, err
	}
	if db.Pool, err = postgres.Open(ctx, db.URL); err == nil {
		_, err = postgres.Migrate(ctx, db.Pool)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the pool, drops the database unless Keep, and stops a
// private cluster.
func (db *scratchDB) Close() {
	if db.Pool != nil {
		db.Pool.Close()
	}
	if !db.Keep {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := postgres.DropDatabase(ctx, db.Server.URL, db.Name); err != nil {
			db.log.Warn("drop scratch database", slog.Any("err", err))
		}
	}
	if err := db.Server.Close(); err != nil {
		db.log.Warn("stop private cluster", slog.Any("err", err))
	}
}

// startCPUProfile writes a CPU profile to path until the returned stop is
// called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeHeapProfile writes the live heap (after a collection) to path; an
// empty path writes nothing.
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}
