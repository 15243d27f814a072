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
