package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// A clinic's address is stored with it and read back with the clinics.
func TestClinicsWithAddress(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	c, err := campaign.Parse([]byte(`
id: addresses
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: all, opens: "2021-08-09 20:00", closes: "2021-08-21 18:00", catch_up: true}
providers:
  - {name: pass, url: "http://127.0.0.1:9"}
schedule: {start: 2021-08-26, days: 1, bands: ["09:00-12:00"]}
clinics:
  - {id: c2, name: 강남구 보건소, region: "11680", lat: 37.5, lng: 127.0, capacity: 5, address: 서울특별시 강남구 선릉로 668}
  - {id: c1, name: One, region: "11680", lat: 37.5, lng: 127.0, capacity: 5}
`), "")
	require.NoError(t, err)
	_, err = store.Load(ctx, c)
	require.NoError(t, err)
	got, err := store.Clinics(ctx, "addresses")
	require.NoError(t, err)
	require.Equal(t, []campaign.Clinic{
		{ID: "c1", Name: "One", Region: "11680", Lat: 37.5, Lng: 127.0},
		{ID: "c2", Name: "강남구 보건소", Region: "11680", Lat: 37.5, Lng: 127.0, Address: "서울특별시 강남구 선릉로 668"},
	}, got)
}
