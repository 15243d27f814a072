package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// send sends a JSON body with a method to a path of the intake.
func (e *env) send(tb testing.TB, method, path string, b any) answer {
	tb.Helper()
	raw, err := json.Marshal(b)
	require.NoError(tb, err)
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(raw))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/json")
	return do(tb, req)
}

// raw answers a request with its status, Content-Type and body bytes.
func raw(tb testing.TB, req *http.Request) (int, string, []byte) {
	tb.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(tb, err)
	return res.StatusCode, res.Header.Get("Content-Type"), b
}

func TestChangeAndCancel(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	_, err := store.Load(ctx, testCampaign(t))
	require.NoError(t, err)
	requests := &postgres.RequestStore{Pool: db.Pool}
	e := setup(t, func(c *intake.Config) {
		c.Campaigns = store
		c.Statuses = &postgres.StatusStore{Pool: db.Pool}
		c.Requests = requests
		c.LookupRate, c.LookupBurst = 1000, 1000
	})
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}

	a := e.post(t, body(nil))
	require.Equal(t, 202, a.Status, "%v", a.Body)
	receipt := a.Body["receipt"].(string)
	path := "/v1/intents/" + receipt

	// Before the decision: a clinic no campaign has is a field error; one
	// the campaign has is recorded.
	got := e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19", "clinic": "c9"})
	require.Equal(t, 400, got.Status, "%v", got.Body)
	require.Contains(t, got.Body["fields"], "clinic")
	exec(`INSERT INTO clinics (campaign, id, name, region, lat, lng) VALUES ('test-2021', 'c9', 'Clinic 9', '11680', 37.5, 127.0)`)
	got = e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19", "clinic": "c9"})
	require.Equal(t, 200, got.Status, "%v", got.Body)
	require.Equal(t, "received", got.Body["status"])
	require.Equal(t, 400, e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19"}).Status, "a change names a clinic")
	require.Equal(t, 400, e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "19900819", "clinic": "c9"}).Status)

	// dedupe decides it and applies the change it recorded.
	exec(`WITH r AS (
		INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ('test-2021', 'idk', 0, 'd9', '1990-08-19', '11680', 'k', '\x00', $1, 'dev', now()) RETURNING id)
		INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, registration_id, device_key, birthdate, received_at)
		SELECT 'test-2021', $1, 0, 'd9', 'registered', 'pass', r.id, 'dev', '1990-08-19', now() FROM r`, receipt)
	require.NoError(t, requests.Resolve(ctx, []string{receipt}))
	var clinic string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT clinic FROM registrations WHERE first_receipt = $1`, receipt).Scan(&clinic))
	require.Equal(t, "c9", clinic, "the change made in flight reached the registration")

	// A wrong birth date answers exactly as the lookup does.
	lookupReq, _ := http.NewRequest(http.MethodGet, e.url+path+"?birthdate=1990-08-29", nil)
	ls, lct, lb := raw(t, lookupReq)
	require.Equal(t, 404, ls)
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, path + "/cancel", `{"birthdate":"1990-08-29"}`},
		{http.MethodPatch, path, `{"birthdate":"1990-08-29","clinic":"c9"}`},
	} {
		req, _ := http.NewRequest(r.method, e.url+r.path, bytes.NewReader([]byte(r.body)))
		req.Header.Set("Content-Type", "application/json")
		s, ct, b := raw(t, req)
		require.Equal(t, ls, s, r.method)
		require.Equal(t, lct, ct, r.method)
		require.Equal(t, lb, b, "%s with a wrong birth date: the lookup's body, byte for byte", r.method)
	}

	// Once a round holds the registration, a change is refused.
	exec(`INSERT INTO slots (campaign, clinic, day, band, capacity, used) VALUES ('test-2021', 'c9', '2021-08-26', 0, 5, 1)`)
	exec(`INSERT INTO appointments (campaign, registration_id, clinic, day, band)
		SELECT 'test-2021', id, 'c9', '2021-08-26', 0 FROM registrations WHERE first_receipt = $1`, receipt)
	got = e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19", "clinic": "c9"})
	require.Equal(t, 409, got.Status, "%v", got.Body)
	require.Equal(t, "already_allocated", got.Body["error"])

	// Cancel, twice: the same answer; the lookup says cancelled; the slot
	// is free.
	for range 2 {
		got = e.send(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": "1990-08-19"})
		require.Equal(t, 200, got.Status, "%v", got.Body)
		require.Equal(t, "cancelled", got.Body["status"])
	}
	got = e.get(t, path+"?birthdate=1990-08-19")
	require.Equal(t, 200, got.Status)
	require.Equal(t, "cancelled", got.Body["status"])
	var used, sms int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT used FROM slots WHERE campaign = 'test-2021' AND clinic = 'c9'`).Scan(&used))
	require.Zero(t, used, "the cancelled appointment's slot is free")
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE kind = 'cancellation'`).Scan(&sms))
	require.Equal(t, 1, sms, "one cancellation SMS however often it is asked")
	require.Equal(t, 409, e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19", "clinic": "c9"}).Status,
		"a cancelled registration is not changed")

	// Once the campaign is purged, neither is recorded: 409, a cancel's
	// with reason purged.
	exec(`INSERT INTO campaign_purges (campaign, purged_at, removed) VALUES ('test-2021', now(), '{}')`)
	for _, r := range []struct {
		method, path string
		body         map[string]string
	}{
		{http.MethodPost, path + "/cancel", map[string]string{"birthdate": "1990-08-19"}},
		{http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19", "clinic": "c9"}},
	} {
		got = e.send(t, r.method, r.path, r.body)
		require.Equal(t, 409, got.Status, "%s on a purged campaign: %v", r.method, got.Body)
		if r.method == http.MethodPost {
			// (A change of this cancelled registration is already_allocated.)
			require.Equal(t, "purged", got.Body["reason"])
		}
	}
}

// Lookup, change and cancel share one lockout per receipt: wrong birth
// dates counted on any of them lock all of them.
func TestRequestsShareTheLockout(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	_, err := store.Load(ctx, testCampaign(t))
	require.NoError(t, err)
	e := setup(t, func(c *intake.Config) {
		c.Campaigns = store
		c.Statuses = &postgres.StatusStore{Pool: db.Pool}
		c.Requests = &postgres.RequestStore{Pool: db.Pool}
		c.LookupRate, c.LookupBurst = 1000, 1000
	})
	a := e.post(t, body(nil))
	require.Equal(t, 202, a.Status, "%v", a.Body)
	receipt := a.Body["receipt"].(string)
	path := "/v1/intents/" + receipt
	_, err = db.Pool.Exec(ctx, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, device_key, birthdate, received_at)
		VALUES ('test-2021', $1, 0, 'd9', 'rejected', 'invalid_token', 'pass', 'dev', '1990-08-19', now())`, receipt)
	require.NoError(t, err)

	wrong := []func() int{
		func() int { return e.get(t, path+"?birthdate=1990-08-29").Status },
		func() int {
			return e.send(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": "1990-08-29"}).Status
		},
		func() int {
			return e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-29", "clinic": "c1"}).Status
		},
	}
	for i := range 5 {
		require.Equal(t, 404, wrong[i%3](), "wrong birth date %d", i+1)
	}
	got := e.send(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": "1990-08-19"})
	require.Equal(t, 429, got.Status, "locked after five wrong dates, whichever route counted them")
	require.Equal(t, "rate_limited", got.Body["error"])
	require.NotEmpty(t, got.Header.Get("Retry-After"))
	require.Equal(t, 429, e.get(t, path+"?birthdate=1990-08-19").Status)
}

// Changes and cancellations spend the per-address lookup budget.
func TestRequestsAreRateLimited(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	_, err := store.Load(ctx, testCampaign(t))
	require.NoError(t, err)
	e := setup(t, func(c *intake.Config) {
		c.Campaigns = store
		c.Statuses = &postgres.StatusStore{Pool: db.Pool}
		c.Requests = &postgres.RequestStore{Pool: db.Pool}
		c.LookupRate, c.LookupBurst = 0.001, 3
	})
	a := e.post(t, body(nil))
	require.Equal(t, 202, a.Status, "%v", a.Body)
	path := "/v1/intents/" + a.Body["receipt"].(string)
	require.Equal(t, 200, e.get(t, path+"?birthdate=1990-08-19").Status)
	require.Equal(t, 200, e.send(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": "1990-08-19"}).Status)
	require.Equal(t, 200, e.send(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": "1990-08-19"}).Status)
	got := e.send(t, http.MethodPatch, path, map[string]string{"birthdate": "1990-08-19", "clinic": "c1"})
	require.Equal(t, 429, got.Status, "the address spent its lookups")
	require.NotEmpty(t, got.Header.Get("Retry-After"))
}
