package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres"
)

// DATABASE_URL=private: prereg starts its own cluster from the installed
// binaries, serves from it, and stops it, leaving nothing behind.
func TestPrivateClusterStartsServesStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := postgres.FindServer(ctx, postgres.PrivateURL, nil)
	require.NoError(t, err, "a private cluster needs initdb and pg_ctl (apt-get install -y postgresql)")
	require.True(t, srv.Private())

	require.NoError(t, postgres.CreateDatabase(ctx, srv.URL, "prereg"))
	pool, err := postgres.Open(ctx, srv.DatabaseURL("prereg"))
	require.NoError(t, err)
	applied, err := postgres.Migrate(ctx, pool)
	require.NoError(t, err)
	require.NotEmpty(t, applied)
	again, err := postgres.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, again, "a second migrate applies nothing")
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n))
	require.Equal(t, len(applied), n)
	pool.Close()

	dir := clusterDir(t, srv.URL)
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close(), "Close is idempotent")
	_, statErr := os.Stat(dir)
	require.True(t, os.IsNotExist(statErr), "the private cluster's folder is removed")
	require.Error(t, postgres.Ping(ctx, srv.URL), "the private cluster is stopped")
}

// A cluster killed like a crash comes back on the same data.
func TestPrivateClusterSurvivesKill(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := postgres.StartCluster(ctx, postgres.ClusterConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	pool, err := postgres.Open(ctx, c.URL())
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`)
	require.NoError(t, err)
	pool.Close()
	require.NoError(t, c.Kill())
	require.Error(t, postgres.Ping(ctx, c.URL()))
	require.NoError(t, c.Start(ctx))
	pool, err = postgres.Open(ctx, c.URL())
	require.NoError(t, err)
	defer pool.Close()
	var v int
	require.NoError(t, pool.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v))
	require.Equal(t, 42, v)
}

func TestMigrationsAreNumberedUniquely(t *testing.T) {
	t.Parallel()
	ms, err := postgres.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	require.Equal(t, 1, ms[0].Version)
	for i := 1; i < len(ms); i++ {
		require.Greater(t, ms[i].Version, ms[i-1].Version)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://postgres@127.0.0.1:5432/x?sslmode=disable", postgres.WithDatabase(postgres.LocalURL, "x"))
	require.Equal(t, "host=/tmp dbname=x", postgres.WithDatabase("host=/tmp", "x"))
}

// clusterDir finds the private cluster's folder from its socket setting.
func clusterDir(t *testing.T, url string) string {
	t.Helper()
	pool, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	defer pool.Close()
	var dataDir string
	require.NoError(t, pool.QueryRow(context.Background(), `SHOW data_directory`).Scan(&dataDir))
	return filepath.Dir(dataDir)
}
