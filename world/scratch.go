package world

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/postgres"
)

// ScratchDB is a fresh, migrated database of its own for one run of a
// command (demo, dev, benchmarks) on the configured server.
type ScratchDB struct {
	Server *postgres.Server
	Name   string
	URL    string
	Pool   *pgxpool.Pool
	// Keep leaves the database in place at Close (its URL is printed by
	// the command).
	Keep bool
	log  *slog.Logger
}

// OpenScratch creates database prefix_<random> on the server that
// serverURL names (empty: the local server, else a private cluster; see
// postgres.FindServer), applies the schema and opens a pool. Close drops it
// (unless Keep) and stops a private cluster.
func OpenScratch(ctx context.Context, serverURL, prefix string, log *slog.Logger) (*ScratchDB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := postgres.FindServer(ctx, serverURL, log)
	if err != nil {
		return nil, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := &ScratchDB{Server: srv, Name: prefix + "_" + hex.EncodeToString(b[:]), log: log}
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
func (db *ScratchDB) Close() {
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
