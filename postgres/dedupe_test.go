package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

func loadDedupeCampaign(tb testing.TB, pool *postgres.CampaignStore, id string, shards int) *campaign.Campaign {
	tb.Helper()
	c, err := campaign.Parse(fmt.Appendf(nil, `
id: %s
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows: [{id: d9, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [9]}]
providers: [{name: pass, url: "http://127.0.0.1:9101"}]
shards: %d
schedule: {start: 2021-08-26, days: 14}
`, id, shards), "")
	require.NoError(tb, err)
	_, err = pool.Load(context.Background(), c)
	require.NoError(tb, err)
	return c
}

// TestRegisteredKeysStreamsEveryKeyOfTheShards checks the COPY TO path of
// the Bloom rebuild, with enough rows to span many COPY chunks.
func TestRegisteredKeysStreamsEveryKeyOfTheShards(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	c := loadDedupeCampaign(t, &postgres.CampaignStore{Pool: db.Pool}, "rebuild-test", 8)
	const n = 20000
	want := map[int]int{}
	_, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"registrations"},
		[]string{"campaign", "identity_key", "shard", "window_id", "birthdate", "region", "phone_kid", "phone_enc", "first_receipt", "device_key", "received_at"},
		pgx.CopyFromFunc(func() func() ([]any, error) {
			i := 0
			return func() ([]any, error) {
				if i >= n {
					return nil, nil
				}
				k := fmt.Sprintf("%064x", i)
				i++
				s := prereg.Shard(k, c.Shards)
				want[s]++
				return []any{c.ID, k, int32(s), "d9", time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC), "11680", "k1", []byte{1}, k[:20], "dev", time.Now()}, nil
			}
		}()))
	require.NoError(t, err)
	store := &postgres.DedupeStore{Pool: db.Pool}
	for _, tc := range []struct {
		name   string
		shards []int
	}{
		{name: "all shards", shards: nil},
		{name: "two shards", shards: []int{1, 6}},
		{name: "no such shard", shards: []int{99}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[int]int{}
			require.NoError(t, store.RegisteredKeys(ctx, c.ID, tc.shards, func(k string) {
				require.Len(t, k, 64, "whole lines only")
				got[prereg.Shard(k, c.Shards)]++
			}))
			expect := map[int]int{}
			for s, cnt := range want {
				if tc.shards == nil || hasShard(tc.shards, s) {
					expect[s] = cnt
				}
			}
			require.Equal(t, expect, got)
		})
	}
	// A campaign id is quoted, never interpreted.
	require.NoError(t, store.RegisteredKeys(ctx, "x' OR '1'='1", nil, func(k string) {
		t.Fatalf("no key expected, got one of %d characters", len(strings.TrimSpace(k)))
	}))
}

func hasShard(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestCountDevicesRanksAreDenseAcrossWorkers has many workers rank new
// people on the same few devices at once, each in its own transaction as
// dedupe does: the per-device advisory lock must hand out every rank
// exactly once, so that a device's highest rank is its distinct people and
// the device cap holds whichever worker decides.
func TestCountDevicesRanksAreDenseAcrossWorkers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	c := loadDedupeCampaign(t, &postgres.CampaignStore{Pool: db.Pool}, "ranks-test", 4)
	store := &postgres.DedupeStore{Pool: db.Pool}
	devices := []string{"dev-a", "dev-b", "dev-c"}
	const workers, batches, perBatch = 8, 10, 6
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for b := range batches {
				var pairs []dedupe.Pair
				for i := range perBatch {
					person := fmt.Sprintf("p-%d-%d-%d", w, b, i)
					pairs = append(pairs, dedupe.Pair{Campaign: c.ID, Window: "d9", DeviceKey: devices[i%len(devices)], IdentityKey: person, Receipt: "r-" + person})
				}
				// The same pair twice in a batch is one pair.
				pairs = append(pairs, pairs[0])
				if err = store.Decide(ctx, func(tx dedupe.Tx) error {
					counts, err := tx.CountDevices(ctx, pairs)
					if err != nil {
						return err
					}
					if counts[0].Rank != counts[len(counts)-1].Rank {
						return fmt.Errorf("a repeated pair got ranks %d and %d", counts[0].Rank, counts[len(counts)-1].Rank)
					}
					return nil
				}); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	rows, err := db.Pool.Query(ctx, `SELECT device_key, count(*), count(DISTINCT rank), min(rank), max(rank)
		FROM device_people WHERE campaign = $1 GROUP BY device_key ORDER BY device_key`, c.ID)
	require.NoError(t, err)
	defer rows.Close()
	want := workers * batches * perBatch / len(devices)
	seen := 0
	for rows.Next() {
		var dev string
		var n, distinct, lo, hi int
		require.NoError(t, rows.Scan(&dev, &n, &distinct, &lo, &hi))
		require.Equal(t, want, n, "%s: every person paired once", dev)
		require.Equal(t, n, distinct, "%s: no rank handed out twice", dev)
		require.Equal(t, 1, lo, dev)
		require.Equal(t, n, hi, "%s: ranks are dense, so the highest is the count", dev)
		seen++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(devices), seen)
}
