package check_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/check"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

func TestMain(m *testing.M) { pgtest.VerifyMain(m) }

const checkCampaign = "check-test"

// checkFixture is a small, clean campaign: two people registered (one also
// submitted twice), one scheduled and notified.
func checkFixture(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	c := testCampaign(t, checkCampaign)
	_, err := (&postgres.CampaignStore{Pool: db.Pool}).Load(ctx, c)
	require.NoError(t, err)
	exec(t, db.Pool, `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ($1, 'id-a', 0, 'all', '1990-08-19', '11680', 'k1', '\x00112233', 'r-a1', 'dev-a', now()),
		       ($1, 'id-b', 1, 'all', '1991-03-09', '11680', 'k1', '\x00445566', 'r-b1', 'dev-b', now())`, checkCampaign)
	exec(t, db.Pool, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key, registration_id, matched_receipt, device_key, received_at)
		SELECT $1, 'r-a1', 0, 'all', 'registered', '', 'pass', 'id-a', id, NULL, 'dev-a', now() FROM registrations WHERE identity_key = 'id-a'`, checkCampaign)
	exec(t, db.Pool, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key, registration_id, matched_receipt, device_key, received_at)
		SELECT $1, 'r-b1', 1, 'all', 'registered', '', 'pass', 'id-b', id, NULL, 'dev-b', now() FROM registrations WHERE identity_key = 'id-b'`, checkCampaign)
	exec(t, db.Pool, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key, registration_id, matched_receipt, device_key, received_at)
		SELECT $1, 'r-a2', 0, 'all', 'duplicate', 'same_device', 'pass', 'id-a', id, 'r-a1', 'dev-a', now() FROM registrations WHERE identity_key = 'id-a'`, checkCampaign)
	exec(t, db.Pool, `INSERT INTO appointments (campaign, registration_id, clinic, day, band)
		SELECT $1, id, 'c1', '2021-08-26', 0 FROM registrations WHERE identity_key = 'id-a'`, checkCampaign)
	exec(t, db.Pool, `UPDATE slots SET used = 1 WHERE campaign = $1 AND clinic = 'c1' AND day = '2021-08-26' AND band = 0`, checkCampaign)
	exec(t, db.Pool, `INSERT INTO outbox (campaign, appointment_id, version, idempotency_key, state)
		SELECT $1, id, 1, $1 || ':' || id || ':v1', 'delivered' FROM appointments`, checkCampaign)
	return db
}

func testCampaign(t testing.TB, id string) *campaign.Campaign {
	t.Helper()
	c, err := campaign.Parse([]byte(`
id: `+id+`
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: all, opens: "2021-08-09 20:00", closes: "2021-08-21 18:00", catch_up: true}
providers:
  - {name: pass, url: "http://127.0.0.1:9"}
schedule: {start: 2021-08-26, days: 2, bands: ["09:00-12:00"]}
clinics:
  - {id: c1, name: Clinic one, region: "11680", lat: 37.5, lng: 127.0, capacity: 1}
`), "")
	require.NoError(t, err)
	return c
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	_, err := pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

// run checks the fixture's campaign.
func run(t testing.TB, db *pgtest.DB, opts check.Options) *check.Report {
	t.Helper()
	rep, err := check.Run(context.Background(), db.Pool, checkCampaign, opts)
	require.NoError(t, err)
	return rep
}

// failed lists the ids of the invariants a report fails.
func failed(rep *check.Report) []int {
	var ids []int
	for _, inv := range rep.Invariants {
		if !inv.OK {
			ids = append(ids, inv.ID)
		}
	}
	return ids
}

func TestCleanDatabasePasses(t *testing.T) {
	t.Parallel()
	rep := run(t, checkFixture(t), check.Options{})
	require.True(t, rep.OK, "a clean campaign fails %v", rep.Failed())
	require.Len(t, rep.Invariants, 6)
	require.Empty(t, rep.Failed())
}

func TestUnknownCampaign(t *testing.T) {
	t.Parallel()
	_, err := check.Run(context.Background(), pgtest.New(t).Pool, "no-such", check.Options{})
	require.ErrorIs(t, err, prereg.ErrCampaignNotFound)
}

// Each case corrupts a clean database the way a bug could, bypassing the
// constraint that would have stopped it, and expects check to fail
// exactly that invariant.
func TestCatchesEachInvariant(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		invariant int
		corrupt   []string
	}{
		{"registration without a decision", 1, []string{
			`INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
			 VALUES ('check-test', 'id-c', 0, 'all', '1990-01-01', '11680', 'k1', '\x00', 'r-c1', 'dev-c', now())`}},
		{"decision counted twice", 1, []string{
			`ALTER TABLE decisions DROP CONSTRAINT decisions_pkey CASCADE`,
			`DROP INDEX decisions_receipt`,
			`INSERT INTO decisions SELECT * FROM decisions WHERE receipt = 'r-b1'`}},
		{"two registrations of one person", 2, []string{
			`ALTER TABLE registrations DROP CONSTRAINT registrations_one_per_person`,
			`INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
			 VALUES ('check-test', 'id-a', 0, 'all', '1990-08-19', '11680', 'k1', '\x00', 'r-a3', 'dev-x', now())`,
			`INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, identity_key, registration_id, device_key, received_at)
			 SELECT 'check-test', 'r-a3', 0, 'all', 'registered', 'pass', 'id-a', max(id), 'dev-x', now() FROM registrations`}},
		{"slot over capacity", 3, []string{
			`ALTER TABLE slots DROP CONSTRAINT slots_capacity`,
			`INSERT INTO appointments (campaign, registration_id, clinic, day, band)
			 SELECT 'check-test', id, 'c1', '2021-08-26', 0 FROM registrations WHERE identity_key = 'id-b'`,
			`UPDATE slots SET used = 2 WHERE clinic = 'c1' AND day = '2021-08-26' AND band = 0`}},
		{"two appointments for one registration", 3, []string{
			`ALTER TABLE appointments DROP CONSTRAINT appointments_one_per_registration`,
			`INSERT INTO appointments (campaign, registration_id, clinic, day, band)
			 SELECT 'check-test', id, 'c1', '2021-08-27', 0 FROM registrations WHERE identity_key = 'id-a'`,
			`UPDATE slots SET used = 1 WHERE clinic = 'c1' AND day = '2021-08-27'`}},
		{"a second SMS without an operator", 4, []string{
			`INSERT INTO outbox (campaign, appointment_id, version, idempotency_key, state)
			 SELECT 'check-test', id, 2, 'again', 'delivered' FROM appointments`}},
		{"one message delivered twice by the gateway", 4, []string{
			`INSERT INTO delivery_reports (outbox_id, gateway_message_id, status, reported_at)
			 SELECT id, 'gw-1', 'delivered', now() FROM outbox`,
			`INSERT INTO delivery_reports (outbox_id, gateway_message_id, status, reported_at)
			 SELECT id, 'gw-2', 'delivered', now() FROM outbox`}},
		{"duplicate that names no registration", 5, []string{
			`ALTER TABLE decisions DROP CONSTRAINT decisions_duplicate_names_match`,
			`INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key, device_key, received_at)
			 VALUES ('check-test', 'r-b2', 1, 'all', 'duplicate', 'other_device', 'pass', 'id-b', 'dev-b2', now())`}},
		// Decisions name registrations without a foreign key (migration
		// 0006): check is what catches a dangling one.
		{"duplicate naming a registration that does not exist", 5, []string{
			`INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key, registration_id, matched_receipt, device_key, received_at)
			 VALUES ('check-test', 'r-b2', 1, 'all', 'duplicate', 'other_device', 'pass', 'id-b', 999999, 'r-b1', 'dev-b2', now())`}},
		{"registered decision naming a registration that does not exist", 1, []string{
			`INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, identity_key, registration_id, device_key, received_at)
			 VALUES ('check-test', 'r-d1', 1, 'all', 'registered', 'pass', 'id-d', 999999, 'dev-d', now())`}},
		{"a cancellation lost behind its decision", 1, []string{
			`INSERT INTO cancellations (receipt, birthdate) VALUES ('r-b1', '1991-03-09')`}},
		{"a cancelled registration that keeps its slot", 3, []string{
			`INSERT INTO cancellations (receipt, birthdate, outcome, campaign, registration_id, resolved_at)
			 SELECT 'r-a1', '1990-08-19', 'applied', 'check-test', id, now() FROM registrations WHERE identity_key = 'id-a'`}},
		{"a slot that does not count its appointment", 3, []string{
			`UPDATE slots SET used = 0 WHERE clinic = 'c1' AND day = '2021-08-26' AND band = 0`}},
		{"two cancellation messages for one registration", 4, []string{
			`DROP INDEX outbox_one_cancellation`,
			`INSERT INTO outbox (campaign, kind, registration_id, version, idempotency_key, state)
			 SELECT 'check-test', 'cancellation', id, 1, 'c-' || v, 'delivered' FROM registrations, generate_series(1, 2) AS v WHERE identity_key = 'id-b'`}},
		{"plain phone in the database", 6, []string{
			`UPDATE outbox SET last_error = 'gateway refused 010-1234-5678'`}},
		{"plain phone in a bytea column", 6, []string{
			`UPDATE registrations SET phone_enc = convert_to('+821012345678', 'UTF8') WHERE identity_key = 'id-b'`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := checkFixture(t)
			for _, sql := range tc.corrupt {
				exec(t, db.Pool, sql)
			}
			rep := run(t, db, check.Options{})
			require.False(t, rep.OK)
			require.Equal(t, []int{tc.invariant}, failed(rep), "only invariant %d should fail: %v", tc.invariant, rep.Failed())
		})
	}
}

// A cancellation made through the store, from a duplicate's receipt,
// keeps every invariant: the slot is given back, one SMS is queued.
func TestCancellationKeepsInvariants(t *testing.T) {
	t.Parallel()
	db := checkFixture(t)
	exec(t, db.Pool, `UPDATE decisions SET birthdate = '1990-08-19' WHERE identity_key = 'id-a'`)
	birth := time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC)
	rq := &postgres.RequestStore{Pool: db.Pool}
	require.NoError(t, rq.Cancel(context.Background(), "r-a2", birth))
	require.NoError(t, rq.Cancel(context.Background(), "r-a1", birth), "from the person's other receipt too")
	rep := run(t, db, check.Options{})
	require.True(t, rep.OK, "a cancelled registration fails %v", rep.Failed())
}

// An outcome in the verified stream that never got a decision is an
// accepted intent lost between JetStream and PostgreSQL.
func TestFindsOutcomeWithoutDecision(t *testing.T) {
	t.Parallel()
	db := checkFixture(t)
	js := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	publish := func(receipt string) {
		o := prereg.Outcome{Receipt: receipt, Campaign: checkCampaign, Verdict: prereg.VerdictVerified, IdentityKey: "id-a", DecidedAt: time.Now()}
		data, err := json.Marshal(o)
		require.NoError(t, err)
		_, err = js.JS.Publish(ctx, stream.VerifiedSubject(0), data)
		require.NoError(t, err)
	}
	for _, r := range []string{"r-a1", "r-b1", "r-a2"} {
		publish(r)
	}
	rep := run(t, db, check.Options{JS: js.JS, Settled: true})
	require.True(t, rep.OK, "every outcome decided: %v", rep.Failed())
	require.Equal(t, 3, rep.Outcomes)

	publish("r-lost")
	rep = run(t, db, check.Options{JS: js.JS})
	require.True(t, rep.OK, "unsettled, an undecided outcome is in flight, not lost: %v", rep.Failed())
	require.Equal(t, 1, rep.InFlight)
	rep = run(t, db, check.Options{JS: js.JS, Settled: true})
	require.Equal(t, []int{1}, failed(rep))
	require.Contains(t, rep.Invariants[0].Examples, "accepted, never decided: r-lost")
}
