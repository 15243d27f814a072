package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
)

// A phone under a key this worker lacks is the operator's error: the
// worker hands the message back uncounted, stops claiming and says why in
// Ready; nothing fails, nothing is sent. A worker restarted with the key
// sends every message, and the resealer moves the kept phones to the
// current key.
func TestMissingKeyStopsNotify(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 20})
	ctx := context.Background()
	ks, err := keys.ParseKeys(w.encKey, 32)
	require.NoError(t, err)
	next := keys.Key{ID: "t2", Secret: []byte(keys.Random(32))[:32]}
	lacking, err := keys.NewSealer([]keys.Key{next})
	require.NoError(t, err)
	rotated, err := keys.NewSealer([]keys.Key{next, ks[0]})
	require.NoError(t, err)

	w.sealer = lacking
	stopped := w.worker(t, notify.Config{BatchSize: 4, Concurrency: 2}, notify.GatewayConfig{})
	require.NoError(t, stopped.Start(ctx))
	defer stopped.Stop()
	require.Eventually(t, func() bool { return stopped.Ready(ctx) != nil }, 10*time.Second, 10*time.Millisecond, "the worker stops")
	require.ErrorContains(t, stopped.Ready(ctx), "t1")
	require.Never(t, func() bool { return w.gw.Stats().Accepted > 0 }, 300*time.Millisecond, 20*time.Millisecond, "nothing sent")
	require.Equal(t, 20, w.counts(t).Pending, "every message still pending: none failed")
	var attempts int
	require.NoError(t, w.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(attempts), 0) FROM outbox`).Scan(&attempts))
	require.Zero(t, attempts, "a missing key counts no attempt against a message")
	_, err = stopped.DrainOnce(ctx)
	require.ErrorContains(t, err, "t1", "DrainOnce refuses too")

	w.sealer = rotated
	fixed := w.worker(t, notify.Config{BatchSize: 4, Concurrency: 2}, notify.GatewayConfig{})
	drain(t, fixed, 30*time.Second)
	w.requireEachOnce(t)
	require.NoError(t, fixed.Ready(ctx))

	phones := &postgres.PhoneStore{Pool: w.db.Pool}
	r := &notify.Resealer{Store: phones, Sealer: rotated, Keys: &keys.Alarm{Stage: "notify"}, Batch: 7, Pause: time.Millisecond, Idle: 10 * time.Millisecond}
	require.NoError(t, r.Start(ctx))
	defer r.Stop()
	require.Eventually(t, func() bool {
		counts, err := phones.PhoneKeys(ctx)
		require.NoError(t, err)
		return len(counts) == 1 && counts["t2"] == 20
	}, 10*time.Second, 10*time.Millisecond, "every phone re-sealed")
}

// A resealer that meets a phone under a key it lacks raises the stage's
// alarm and stops, rather than skipping it.
func TestResealerStopsOnAMissingKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 5})
	ctx := context.Background()
	lacking, err := keys.NewSealer([]keys.Key{{ID: "t2", Secret: []byte(keys.Random(32))[:32]}})
	require.NoError(t, err)
	alarm := &keys.Alarm{Stage: "notify"}
	r := &notify.Resealer{Store: &postgres.PhoneStore{Pool: w.db.Pool}, Sealer: lacking, Keys: alarm, Pause: time.Millisecond, Idle: 10 * time.Millisecond}
	require.NoError(t, r.Start(ctx))
	defer r.Stop()
	require.Eventually(t, alarm.Raised, 10*time.Second, 10*time.Millisecond, "the alarm")
	require.ErrorContains(t, alarm.Err(), "t1")
}
