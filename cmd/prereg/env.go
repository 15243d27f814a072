package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

// Env is what a command gets from the outside: its streams, environment
// and logger. Tests run commands with their own Env.
type Env struct {
	// Stdin answers a command's confirmation; a command asks only when
	// it is a terminal.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Logger *slog.Logger
}

// Config reads and validates the environment's whole configuration
// (config.Settings). Outside demo and dev the keys are required; in them,
// missing keys are made up and the second result names them.
func (e *Env) Config(requireSecrets bool) (config.Config, []string, error) {
	cfg, err := config.FromEnv(e.Getenv, requireSecrets)
	return cfg, cfg.Generated, err
}

// Database connects to the configured database (postgres.Connect): with
// migrate it applies the schema, without it checks the applied one.
func (e *Env) Database(ctx context.Context, migrate bool) (*pgxpool.Pool, func(), error) {
	cfg, _, err := e.Config(false)
	if err != nil {
		return nil, nil, err
	}
	return postgres.Connect(ctx, cfg.DatabaseURL, migrate, e.Logger)
}

// NATS connects to NATS_URL. Unset, with allowEmbedded (demo, dev, bench)
// it starts an embedded JetStream server (stream.Dial); without, it is an
// error.
func (e *Env) NATS(ctx context.Context, allowEmbedded bool) (*nats.Conn, func(), error) {
	cfg, _, err := e.Config(false)
	if err != nil {
		return nil, nil, err
	}
	var embedded *stream.EmbeddedConfig
	if allowEmbedded {
		embedded = &stream.EmbeddedConfig{Port: -1}
	}
	return stream.Dial(ctx, cfg.NatsURL, embedded, e.Logger)
}
