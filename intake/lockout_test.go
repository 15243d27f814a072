package intake_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
)

// rightDate is body()'s birth date; wrongDates are others in the cohort.
const rightDate = "1990-08-19"

func wrongDate(i int) string {
	return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).Format("2006-01-02")
}

// decidedEnv is an intake on a real status store with one submission
// decided (registered): the lookup has a birth date to compare.
type decidedEnv struct {
	*env
	receipt  string
	statuses *countingStatuses
	tweak    func(*intake.Config)
}

func setupDecided(tb testing.TB, tweak func(*intake.Config)) *decidedEnv {
	tb.Helper()
	db := pgtest.New(tb)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	_, err := store.Load(ctx, testCampaign(tb))
	require.NoError(tb, err)
	statuses := &countingStatuses{StatusReader: &postgres.StatusStore{Pool: db.Pool}}
	full := func(c *intake.Config) {
		c.Campaigns = store
		c.Statuses = statuses
		c.LookupRate = -1 // the per-address limit is not under test
		if tweak != nil {
			tweak(c)
		}
	}
	e := setup(tb, full)
	a := e.post(tb, body(nil))
	require.Equal(tb, 202, a.Status, "%v", a.Body)
	receipt := a.Body["receipt"].(string)

	// Undecided, there is no birth date to compare: any date reads
	// "received", and none of them counts against the receipt.
	for i := range 8 {
		got := e.get(tb, "/v1/intents/"+receipt+"?birthdate="+wrongDate(i))
		require.Equal(tb, 200, got.Status)
		require.Equal(tb, "received", got.Body["status"])
	}

	_, err = db.Pool.Exec(ctx, `WITH r AS (
		INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ('test-2021', 'idk', 0, 'd9', '1990-08-19', '11680', 'k', '\x00', $1, 'dev', now()) RETURNING id)
		INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, registration_id, device_key, birthdate, received_at)
		SELECT 'test-2021', $1, 0, 'd9', 'registered', 'pass', r.id, 'dev', '1990-08-19', now() FROM r`, receipt)
	require.NoError(tb, err)
	return &decidedEnv{env: e, receipt: receipt, statuses: statuses, tweak: full}
}

func (d *decidedEnv) lookup(tb testing.TB, e *env, date string) answer {
	tb.Helper()
	return e.get(tb, "/v1/intents/"+d.receipt+"?birthdate="+date)
}

// rawAnswer is an answer as bytes, to hold two answers to being the same.
type rawAnswer struct {
	status int
	header http.Header
	body   string
}

func getRaw(tb testing.TB, url string) rawAnswer {
	tb.Helper()
	res, err := http.Get(url)
	require.NoError(tb, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(tb, err)
	h := res.Header.Clone()
	h.Del("Date")
	return rawAnswer{status: res.StatusCode, header: h, body: string(b)}
}

func TestLookupLockout(t *testing.T) {
	t.Parallel()
	d := setupDecided(t, nil)
	e := d.env
	require.Equal(t, "registered", d.lookup(t, e, rightDate).Body["status"])

	for i := range 5 {
		require.Equal(t, 404, d.lookup(t, e, wrongDate(i)).Status, "wrong birth date %d", i+1)
	}
	calls := d.statuses.calls.Load()
	for _, date := range []string{rightDate, wrongDate(10)} {
		got := d.lookup(t, e, date)
		require.Equal(t, 429, got.Status, "after 5 wrong birth dates the receipt is locked, for the right date too")
		require.Equal(t, "60", got.Header.Get("Retry-After"))
		require.Equal(t, map[string]any{"error": "rate_limited", "limit": "lookup"}, got.Body)
	}
	require.Equal(t, calls, d.statuses.calls.Load(), "a locked receipt is answered before the decision is read")

	// Another replica on the same JetStream sees the lock.
	other := setupOn(t, e.js, d.tweak)
	other.clock.Set(e.clock.Now())
	require.Equal(t, 429, d.lookup(t, other, rightDate).Status, "the lock holds on every replica")

	// The lock ends; the right date reads the status and counts nothing.
	e.clock.Set(e.clock.Now().Add(61 * time.Second))
	require.Equal(t, "registered", d.lookup(t, e, rightDate).Body["status"])
	require.Equal(t, "registered", d.lookup(t, e, rightDate).Body["status"])
	// One more wrong date locks it again, twice as long.
	require.Equal(t, 404, d.lookup(t, e, wrongDate(20)).Status)
	got := d.lookup(t, e, rightDate)
	require.Equal(t, 429, got.Status)
	require.Equal(t, "120", got.Header.Get("Retry-After"), "each wrong date after the lock doubles it")
}

func TestLookupWrongDateLooksLikeForgedReceipt(t *testing.T) {
	t.Parallel()
	d := setupDecided(t, nil)
	e := d.env
	forged := d.receipt[:len(d.receipt)-2] + "AA"
	if forged == d.receipt {
		forged = d.receipt[:len(d.receipt)-2] + "BB"
	}
	for _, url := range []string{e.url, e.stdURL} {
		wrong := getRaw(t, url+"/v1/intents/"+d.receipt+"?birthdate="+wrongDate(1))
		unknown := getRaw(t, url+"/v1/intents/"+forged+"?birthdate="+wrongDate(1))
		require.Equal(t, 404, wrong.status)
		require.Equal(t, unknown, wrong, "a wrong birth date answers as a receipt never issued: status, headers, body")
	}

	// A forged receipt costs no I/O: no query, no lockout entry.
	calls := d.statuses.calls.Load()
	for range 10 {
		require.Equal(t, 404, e.get(t, "/v1/intents/"+forged+"?birthdate="+rightDate).Status)
	}
	require.Equal(t, calls, d.statuses.calls.Load())
	kv, err := e.js.JS.KeyValue(context.Background(), stream.ReceiptLookups)
	require.NoError(t, err)
	keys, err := kv.ListKeys(context.Background())
	require.NoError(t, err)
	var listed []string
	for k := range keys.Keys() {
		listed = append(listed, k)
	}
	require.Equal(t, []string{d.receipt}, listed, "only the issued receipt has a lockout entry")

	// A locked receipt answers as the per-address limit does.
	for range 5 {
		d.lookup(t, e, wrongDate(3))
	}
	locked := getRaw(t, e.url+"/v1/intents/"+d.receipt+"?birthdate="+rightDate)
	limitedEnv := setupOn(t, e.js, func(c *intake.Config) {
		d.tweak(c)
		c.LookupRate, c.LookupBurst = 0.001, 1
	})
	require.Equal(t, 404, limitedEnv.get(t, "/v1/intents/"+forged+"?birthdate="+rightDate).Status)
	limited := getRaw(t, limitedEnv.url+"/v1/intents/"+forged+"?birthdate="+rightDate)
	require.Equal(t, 429, locked.status)
	require.Equal(t, limited.status, locked.status)
	require.Equal(t, limited.body, locked.body)
	require.NotEmpty(t, locked.header.Get("Retry-After"))
	locked.header.Del("Retry-After")
	limited.header.Del("Retry-After")
	require.Equal(t, limited.header, locked.header)
}

func TestLookupParallelGuessesAreCounted(t *testing.T) {
	t.Parallel()
	d := setupDecided(t, nil)
	e := d.env
	dates := []string{rightDate}
	for i := range 39 {
		dates = append(dates, wrongDate(i))
	}
	var mu sync.Mutex
	right, wrong, locked := 0, 0, 0
	var wg sync.WaitGroup
	for _, date := range dates {
		wg.Go(func() {
			got := d.lookup(t, e, date)
			mu.Lock()
			defer mu.Unlock()
			switch got.Status {
			case 200:
				right++
			case 404:
				wrong++
			case 429:
				locked++
			default:
				t.Errorf("status %d", got.Status)
			}
		})
	}
	wg.Wait()
	// As if sent one by one: five wrong dates answered, and the right one
	// if it came before the fifth.
	require.LessOrEqual(t, wrong, 5, "guesses sent at once are counted before they are compared")
	require.LessOrEqual(t, right, 1)
	require.Equal(t, len(dates), right+wrong+locked)
}

func TestLookupLockoutUnavailable(t *testing.T) {
	t.Parallel()
	d := setupDecided(t, nil)
	e := d.env
	require.NoError(t, e.js.JS.DeleteKeyValue(context.Background(), stream.ReceiptLookups))
	calls := d.statuses.calls.Load()
	for _, date := range []string{rightDate, wrongDate(1)} {
		got := d.lookup(t, e, date)
		require.Equal(t, 503, got.Status, "without the count, no answer")
		require.NotEmpty(t, got.Header.Get("Retry-After"))
	}
	require.Equal(t, calls, d.statuses.calls.Load(), "nor a query")
}
