package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// A campaign is loaded again and again (windows and capacities change);
// only the shard count is fixed once people are registered.
func TestCampaignReload(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	load := func(shards, capacity string) (postgres.LoadResult, error) {
		c, err := campaign.Parse([]byte(`
id: reload
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
shards: `+shards+`
windows:
  - {id: all, opens: "2021-08-09 20:00", closes: "2021-08-21 18:00", catch_up: true}
providers:
  - {name: pass, url: "http://127.0.0.1:9"}
schedule: {start: 2021-08-26, days: 2, bands: ["09:00-12:00"]}
clinics:
  - {id: c1, name: One, region: "11680", lat: 37.5, lng: 127.0, capacity: `+capacity+`}
`), "")
		require.NoError(t, err)
		return store.Load(ctx, c)
	}
	res, err := load("4", "10")
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Equal(t, 2, res.Slots)

	res, err = load("8", "20")
	require.NoError(t, err, "no registrations yet: the shard count may change")
	require.False(t, res.Created)
	var capacity int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT capacity FROM slots WHERE campaign = 'reload' AND day = '2021-08-26'`).Scan(&capacity))
	require.Equal(t, 20, capacity)

	_, err = db.Pool.Exec(ctx, `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ('reload', 'id', 0, 'all', '1990-01-01', '11680', 'k1', '\x00', 'r', 'd', now())`)
	require.NoError(t, err)
	_, err = load("16", "20")
	require.True(t, errors.Is(err, prereg.ErrConflict), "want a conflict, got %v", err)
	_, err = load("8", "30")
	require.NoError(t, err, "the same shard count reloads")
	got, err := store.Get(ctx, "reload")
	require.NoError(t, err)
	require.Equal(t, 8, got.Shards)
}
