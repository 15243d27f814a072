package postgres_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

func keyCampaign(t *testing.T, id string) *campaign.Campaign {
	t.Helper()
	c, err := campaign.Parse([]byte(`
id: `+id+`
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
shards: 4
windows:
  - {id: all, opens: "2021-08-09 20:00", closes: "2021-08-21 18:00", catch_up: true}
providers:
  - {name: pass, url: "http://127.0.0.1:9"}
schedule: {start: 2021-08-26, days: 2, bands: ["09:00-12:00"]}
`), "")
	require.NoError(t, err)
	return c
}

// A campaign is pinned to the current HMAC key when loaded and keeps it
// through reloads by processes whose current key is another; one loaded
// without a key (by a command holding none, or before migration 0009) is
// pinned at its first read by a process with keys; and the schema refuses
// to change a pin.
func TestCampaignKeyPin(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	before := &postgres.CampaignStore{Pool: db.Pool, HMACKeyID: "h1"}
	after := &postgres.CampaignStore{Pool: db.Pool, HMACKeyID: "h2"}
	keyless := &postgres.CampaignStore{Pool: db.Pool}

	_, err := before.Load(ctx, keyCampaign(t, "old"))
	require.NoError(t, err)
	_, err = after.Load(ctx, keyCampaign(t, "old"))
	require.NoError(t, err, "a reload")
	c, err := after.Get(ctx, "old")
	require.NoError(t, err)
	require.Equal(t, "h1", c.HMACKey, "a reload keeps the key the campaign started with")

	_, err = after.Load(ctx, keyCampaign(t, "new"))
	require.NoError(t, err)
	_, err = keyless.Load(ctx, keyCampaign(t, "unpinned"))
	require.NoError(t, err)
	c, err = keyless.Get(ctx, "unpinned")
	require.NoError(t, err)
	require.Empty(t, c.HMACKey, "a store without keys pins nothing")

	list, _, err := after.List(ctx)
	require.NoError(t, err)
	pins := map[string]string{}
	for _, c := range list {
		pins[c.ID] = c.HMACKey
	}
	require.Equal(t, map[string]string{"old": "h1", "new": "h2", "unpinned": "h2"}, pins, "new campaigns take the current key; the unpinned one is pinned at first use")
	c, err = before.Get(ctx, "unpinned")
	require.NoError(t, err)
	require.Equal(t, "h2", c.HMACKey, "the first pin stays")

	_, err = db.Pool.Exec(ctx, `UPDATE campaigns SET hmac_key = 'h3' WHERE id = 'old'`)
	require.ErrorContains(t, err, "pinned")
}

// Phones kept under an old key move to the current one a batch at a
// time: registrations by walking the ids, held decisions not yet
// reviewed by their key; what is under the current key stays as it is.
func TestResealPhones(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := (&postgres.CampaignStore{Pool: db.Pool, HMACKeyID: "h1"}).Load(ctx, keyCampaign(t, "phones"))
	require.NoError(t, err)
	e1 := keys.Key{ID: "e1", Secret: bytes.Repeat([]byte{1}, 32)}
	e2 := keys.Key{ID: "e2", Secret: bytes.Repeat([]byte{2}, 32)}
	old, err := keys.NewSealer([]keys.Key{e1})
	require.NoError(t, err)
	rotated, err := keys.NewSealer([]keys.Key{e2, e1})
	require.NoError(t, err)
	aad := []byte("phones")
	for i := range 7 {
		s := old
		if i%3 == 0 {
			s = rotated
		}
		p := s.Seal([]byte("010-0000-000"+string(rune('0'+i))), aad)
		_, err := db.Pool.Exec(ctx, `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
			VALUES ('phones', $1, 0, 'all', '1990-01-01', '11680', $2, $3, $1, 'd', now())`, "id-"+string(rune('a'+i)), p.KeyID, p.Data)
		require.NoError(t, err)
	}
	for i, review := range []any{nil, nil, "released"} {
		p := old.Seal([]byte("010-1111-000"+string(rune('0'+i))), aad)
		_, err := db.Pool.Exec(ctx, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, device_key, phone_kid, phone_enc, received_at, review)
			VALUES ('phones', $1, 0, 'all', 'held', 'device_limit', 'pass', 'd', $2, $3, now(), $4)`, "held-"+string(rune('a'+i)), p.KeyID, p.Data, review)
		require.NoError(t, err)
	}
	store := &postgres.PhoneStore{Pool: db.Pool}
	counts, err := store.PhoneKeys(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"e1": 6, "e2": 3}, counts, "a reviewed decision's phone is never opened again: not counted")

	_, _, err = store.ResealRegistrations(ctx, old, 0, 10)
	require.ErrorIs(t, err, keys.ErrUnknownKey, "a phone under a key the sealer lacks")

	var after int64
	total := 0
	for range 10 {
		last, n, err := store.ResealRegistrations(ctx, rotated, after, 3)
		require.NoError(t, err)
		total += n
		if last == after {
			break
		}
		after = last
	}
	require.Equal(t, 4, total, "the registrations under e1")
	n, err := store.ResealHeld(ctx, rotated, 10)
	require.NoError(t, err)
	require.Equal(t, 2, n, "the held decisions not yet reviewed")
	n, err = store.ResealHeld(ctx, rotated, 10)
	require.NoError(t, err)
	require.Zero(t, n)
	counts, err = store.PhoneKeys(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"e2": 9}, counts)

	rows, err := db.Pool.Query(ctx, `SELECT phone_kid, phone_enc FROM registrations WHERE campaign = 'phones'
		UNION ALL SELECT phone_kid, phone_enc FROM decisions WHERE campaign = 'phones'`)
	require.NoError(t, err)
	for rows.Next() {
		var p prereg.Sealed
		require.NoError(t, rows.Scan(&p.KeyID, &p.Data))
		_, err := rotated.Open(p, aad)
		require.NoError(t, err, "every phone opens after re-sealing")
	}
	require.NoError(t, rows.Err())
}
