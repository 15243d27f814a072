package dedupe_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
	"github.com/prereg/prereg/worker"
)

// privateEnv is setup on a private PostgreSQL cluster that the test may
// kill: never the shared server.
func privateEnv(tb testing.TB) (*env, *postgres.Cluster) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := postgres.StartCluster(ctx, postgres.ClusterConfig{Settings: []string{"fsync = off"}})
	require.NoError(tb, err, "a private cluster needs initdb and pg_ctl (apt-get install -y postgresql)")
	tb.Cleanup(func() { _ = c.Stop() })
	pool, err := postgres.Open(ctx, c.URL())
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	_, err = postgres.Migrate(ctx, pool)
	require.NoError(tb, err)
	return &env{
		db:        &pgtest.DB{Pool: pool, URL: c.URL(), Name: "postgres"},
		js:        streamtest.New(tb, stream.Config{}),
		store:     &postgres.DedupeStore{Pool: pool},
		campaigns: &postgres.CampaignStore{Pool: pool},
	}, c
}

// TestDedupeWaitsOutDatabaseOutage: PostgreSQL stops (immediate, like a
// crash) while outcomes arrive and stays down far longer than MaxDeliver
// redeliveries take. No outcome ends as unprocessable or terminated: the
// worker waits, and once the database is back every outcome gets its
// proper decision.
func TestDedupeWaitsOutDatabaseOutage(t *testing.T) {
	t.Parallel()
	e, cluster := privateEnv(t)
	c := loadCampaign(t, e.campaigns, 2, 4, 200)
	reg := prometheusRegistry()
	wk := e.startWorker(t, e.js.JS, dedupe.Config{Registerer: reg, MaxDeliver: 3, AckWait: time.Second, BatchSize: 50, CampaignTTL: 100 * time.Millisecond})
	require.Eventually(t, func() bool { return wk.State().Ready() }, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, cluster.Kill())
	w := newWorld(c, 47, 150)
	w.publish(t, e.js.JS)
	// Three deliveries at a one-second AckWait take a few seconds: the
	// outage outlasts them several times over. Meanwhile the worker says
	// what it waits on.
	require.Eventually(t, func() bool {
		st := wk.State()
		return st.Status == worker.Waiting && st.WaitingOn[0].Dependency == worker.PostgreSQL
	}, 10*time.Second, 20*time.Millisecond, "the worker says it waits on PostgreSQL")
	time.Sleep(12 * time.Second)
	require.False(t, wk.State().Ready())
	require.NoError(t, cluster.Start(context.Background()))

	ds := score(t, e, w)
	for receipt, d := range ds {
		require.NotEqual(t, prereg.ReasonUnprocessable, d.Reason, "receipt %s lost its attempts to the outage", receipt)
	}
	require.Zero(t, counterValue(t, reg, "prereg_dedupe_terminated_total"), "nothing terminated")
	require.True(t, wk.State().Ready(), "ready again: %s", wk.State())
}

// TestDedupeStopsDuringOutage: Stop does not wait for a database that is
// down; the batch it held goes back to the stream, and a worker started
// after the outage decides everything.
func TestDedupeStopsDuringOutage(t *testing.T) {
	t.Parallel()
	e, cluster := privateEnv(t)
	c := loadCampaign(t, e.campaigns, 2, 4, 200)
	cfg := dedupe.Config{AckWait: time.Second, BatchSize: 50}
	first, err := dedupe.New(dedupe.Config{Store: e.store, JetStream: e.js.JS, Campaigns: e.campaigns, AckWait: time.Second, BatchSize: 50})
	require.NoError(t, err)
	require.NoError(t, first.Start(context.Background()))

	require.NoError(t, cluster.Kill())
	w := newWorld(c, 61, 60)
	w.publish(t, e.js.JS)
	require.Eventually(t, func() bool { return first.State().Status == worker.Waiting }, 10*time.Second, 20*time.Millisecond)
	stopped := make(chan struct{})
	go func() { first.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop waited on the database")
	}
	require.Equal(t, worker.Stopped, first.State().Status)

	require.NoError(t, cluster.Start(context.Background()))
	e.startWorker(t, e.js.JS, cfg)
	score(t, e, w)
}
