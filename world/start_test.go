package world_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/world"
)

// startWorld starts a world for a test on a database of the test server,
// quiet, with the settings env gives (nil: an empty environment); the
// caller closes it.
func startWorld(t *testing.T, ctx context.Context, env map[string]string, o world.Options) *world.World {
	t.Helper()
	cfg, err := config.FromEnv(func(k string) string { return env[k] }, false)
	require.NoError(t, err)
	o.Config, o.DatabaseURL = cfg, pgtest.Server(t).URL
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := world.Start(ctx, o)
	require.NoError(t, err)
	return w
}
