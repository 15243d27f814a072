package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// TestReadyzSaysWhichWorkerWaitsOnWhat: a dedupe process is ready while
// its worker runs; when PostgreSQL stops (a private cluster, never the
// shared server) and an outcome arrives, /readyz answers 503 and names the
// worker and what it waits on; once PostgreSQL is back it is ready again.
func TestReadyzSaysWhichWorkerWaitsOnWhat(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err := postgres.StartCluster(ctx, postgres.ClusterConfig{Settings: []string{"fsync = off"}})
	require.NoError(t, err, "a private cluster needs initdb and pg_ctl (apt-get install -y postgresql)")
	t.Cleanup(func() { _ = cluster.Stop() })
	pool, err := postgres.Open(ctx, cluster.URL())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = postgres.Migrate(ctx, pool)
	require.NoError(t, err)
	js := streamtest.New(t, stream.Config{})

	key := keys.Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}
	sys, err := app.New(app.Options{
		Roles:  []app.Role{app.RoleDedupe},
		Pool:   pool,
		NC:     js.NC,
		Config: config.Config{HMACKeys: []keys.Key{key}, EncKeys: []keys.Key{key}},
		Dedupe: app.DedupeOptions{RetryDelay: 50 * time.Millisecond, AckWait: time.Second},
	})
	require.NoError(t, err)
	require.NoError(t, sys.Start(ctx))
	t.Cleanup(sys.Stop)
	srv := httptest.NewServer(sys.Handler())
	t.Cleanup(srv.Close)
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := readyz()
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "dedupe: running")

	require.NoError(t, cluster.Kill())
	_, err = js.JS.Publish(ctx, stream.VerifiedSubject(0), []byte(`{"receipt":"r1","campaign":"c1","verdict":"verified","identity_key":"k"}`))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		code, body = readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "dedupe: waiting on postgresql since")
	}, 20*time.Second, 50*time.Millisecond, "503 naming the worker and its dependency; last answer %d:\n%s", code, body)

	require.NoError(t, cluster.Start(ctx))
	require.Eventually(t, func() bool {
		code, body = readyz()
		return code == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "ready again; last answer %d:\n%s", code, body)
	require.Contains(t, body, "dedupe: running")
}
