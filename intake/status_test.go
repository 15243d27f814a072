package intake_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// countingStatuses counts the lookups that reach the real store.
type countingStatuses struct {
	intake.StatusReader
	calls atomic.Int64
}

func (c *countingStatuses) Status(ctx context.Context, receipt string) (intake.Decided, error) {
	c.calls.Add(1)
	return c.StatusReader.Status(ctx, receipt)
}

func TestStatusLookup(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	_, err := store.Load(ctx, testCampaign(t))
	require.NoError(t, err)
	statuses := &countingStatuses{StatusReader: &postgres.StatusStore{Pool: db.Pool}}
	e := setup(t, func(c *intake.Config) {
		c.Campaigns = store // the real store: campaigns come from PostgreSQL
		c.Statuses = statuses
		c.LookupRate, c.LookupBurst = 0.001, 8
	})

	a := e.post(t, body(nil))
	require.Equal(t, 202, a.Status, "%v", a.Body)
	receipt := a.Body["receipt"].(string)

	got := e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-19")
	require.Equal(t, 200, got.Status)
	require.Equal(t, "received", got.Body["status"], "accepted, not yet decided")
	require.EqualValues(t, 1, statuses.calls.Load())

	forged := receipt[:len(receipt)-2] + "AA"
	if forged == receipt {
		forged = receipt[:len(receipt)-2] + "BB"
	}
	require.Equal(t, 404, e.get(t, "/v1/intents/"+forged+"?birthdate=1990-08-19").Status)
	require.Equal(t, 404, e.get(t, "/v1/intents/not-a-receipt?birthdate=1990-08-19").Status)
	require.EqualValues(t, 1, statuses.calls.Load(), "a forged receipt is answered without a query")

	require.Equal(t, 400, e.get(t, "/v1/intents/"+receipt).Status, "the birth date is required")

	// dedupe decides it: registered.
	_, err = db.Pool.Exec(ctx, `WITH r AS (
		INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ('test-2021', 'idk', 0, 'd9', '1990-08-19', '11680', 'k', '\x00', $1, 'dev', now()) RETURNING id)
		INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, registration_id, device_key, birthdate, received_at)
		SELECT 'test-2021', $1, 0, 'd9', 'registered', 'pass', r.id, 'dev', '1990-08-19', now() FROM r`, receipt)
	require.NoError(t, err)
	got = e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-19")
	require.Equal(t, 200, got.Status)
	require.Equal(t, "registered", got.Body["status"])
	require.Equal(t, "test-2021", got.Body["campaign"])

	wrong := e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-29")
	require.Equal(t, 404, wrong.Status, "the wrong birth date learns nothing")

	var limited answer
	for range 10 {
		if limited = e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-19"); limited.Status == 429 {
			break
		}
	}
	require.Equal(t, 429, limited.Status, "lookups are rate limited")
	require.NotEmpty(t, limited.Header.Get("Retry-After"))
}
