package notify_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/notify/notifytest"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	pgtest.VerifyMain(m)
}

const webhookSecret = "notify-test-webhook-secret"

// world is one test's database, outbox and simulated gateway over HTTP.
type world struct {
	db     *pgtest.DB
	store  *postgres.OutboxStore
	sealer *keys.Sealer
	encKey string
	seeded *notifytest.Seeded
	gw     *sim.Gateway
	gwURL  string
}

type worldConfig struct {
	n       int
	gateway sim.GatewayConfig
	reports bool // run the webhook and have the gateway post to it
	phone   func(int) string
}

func newWorld(tb testing.TB, wc worldConfig) *world {
	tb.Helper()
	ctx := context.Background()
	db := pgtest.New(tb)
	sealer, encKey, err := notifytest.NewSealer()
	require.NoError(tb, err)
	seeded, err := notifytest.Seed(ctx, db.Pool, notifytest.Config{N: wc.n, Sealer: sealer, Phone: wc.phone})
	require.NoError(tb, err)
	w := &world{db: db, store: &postgres.OutboxStore{Pool: db.Pool}, sealer: sealer, encKey: encKey, seeded: seeded}
	if wc.reports {
		hook := httptest.NewServer(notify.ReportHandler(w.store, []byte(webhookSecret), nil, nil))
		tb.Cleanup(hook.Close)
		wc.gateway.ReportURL, wc.gateway.ReportSecret = hook.URL, []byte(webhookSecret)
	}
	w.gw = sim.NewGateway(wc.gateway)
	srv := httptest.NewServer(w.gw.Handler())
	w.gwURL = srv.URL
	tb.Cleanup(func() { srv.Close(); w.gw.Close() })
	return w
}

// worker builds a worker against the world's gateway; the breaker's
// openings are counted in the worker's stats.
func (w *world) worker(tb testing.TB, cfg notify.Config, gc notify.GatewayConfig) *notify.Worker {
	tb.Helper()
	var wk atomic.Pointer[notify.Worker]
	gc.URL = w.gwURL
	gc.OnStateChange = func(_, to gobreaker.State) {
		if to == gobreaker.StateOpen {
			if x := wk.Load(); x != nil {
				x.BreakerOpened()
			}
		}
	}
	gw, err := notify.NewGateway(gc)
	require.NoError(tb, err)
	if cfg.Rate == 0 {
		cfg.Rate = math.Inf(1)
	}
	cfg.PollInterval = cmpOr(cfg.PollInterval, 20*time.Millisecond)
	cfg.Outbox, cfg.Gateway, cfg.Phones, cfg.Campaigns = w.store, gw, w.sealer, &postgres.CampaignStore{Pool: w.db.Pool}
	x, err := notify.New(cfg)
	require.NoError(tb, err)
	wk.Store(x)
	return x
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a == zero {
		return b
	}
	return a
}

// drain runs DrainOnce until nothing is pending.
func drain(tb testing.TB, w *notify.Worker, timeout time.Duration) {
	tb.Helper()
	ctx := context.Background()
	require.EventuallyWithT(tb, func(c *assert.CollectT) {
		// Claim batches back to back while there are any; a pause only
		// when a round found nothing claimable (rows waiting for a retry).
		for {
			n, err := w.DrainOnce(ctx)
			require.NoError(c, err)
			if n == 0 {
				break
			}
		}
		pending, err := w.Pending(ctx)
		require.NoError(c, err)
		require.Zero(c, pending, "messages pending in the outbox")
	}, timeout, 20*time.Millisecond, "outbox not drained after %v", timeout)
}

// counts are the outbox's counts; tb may be an EventuallyWithT collector.
func (w *world) counts(tb require.TestingT) postgres.OutboxCounts {
	if h, ok := tb.(interface{ Helper() }); ok {
		h.Helper()
	}
	c, err := w.store.Counts(context.Background(), "")
	require.NoError(tb, err)
	return c
}

// requireEachOnce checks that every phone got exactly its one message.
func (w *world) requireEachOnce(tb testing.TB) {
	tb.Helper()
	h := w.gw.Handsets()
	for i, p := range w.seeded.Phones {
		require.Equal(tb, 1, h.Received(p), "appointment %d's phone", i)
		require.Equal(tb, 1, h.ReceivedKey(w.seeded.Keys[i]), "message %s", w.seeded.Keys[i])
	}
	require.Zero(tb, h.Duplicates())
}

func TestDrainSendsEachOnceAndReportsDelivery(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 60, reports: true})
	wk := w.worker(t, notify.Config{BatchSize: 16, Concurrency: 4}, notify.GatewayConfig{})
	drain(t, wk, 30*time.Second)
	w.requireEachOnce(t)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.Equal(c, 60, w.counts(c).Delivered)
	}, 15*time.Second, 10*time.Millisecond, "waiting for every delivery report")
	require.Equal(t, postgres.OutboxCounts{Delivered: 60}, w.counts(t))

	var reports, typed int
	require.NoError(t, w.db.Pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM delivery_reports), (SELECT count(*) FROM outbox WHERE message_type = 'sms' AND gateway_message_id IS NOT NULL AND sent_at IS NOT NULL)`).Scan(&reports, &typed))
	require.Equal(t, 60, reports)
	require.Equal(t, 60, typed, "the short Korean text is an SMS")

	text := w.gw.Handsets().Last(w.seeded.Phones[0])
	require.Contains(t, text, "강남구보건소")
	require.Contains(t, text, "8/26(목)")
	require.Contains(t, text, "09:00-12:00")
	require.Contains(t, text, "https://prereg.example.kr/")
	require.NotContains(t, text, strings.ReplaceAll(w.seeded.Phones[0], "-", "")[3:], "no identity data in the text")
	st := wk.Stats()
	require.Equal(t, int64(60), st.Sent)
	require.Zero(t, st.Reclaimed)
}

// The crash test runs the worker in a child process (this test binary
// again) that SIGKILLs itself inside the window between the gateway's
// accept and the mark-sent, then restarts a worker on the same outbox.
const (
	crashChildEnv = "NOTIFY_CRASH_CHILD"
	crashN        = 10
	crashAfter    = 4 // the child dies right after the gateway took its 4th message
)

func TestCrashBetweenAcceptAndMarkSent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		ignoreIdempotency bool
		wantDuplicates    int
	}{
		{"gateway honours idempotency keys: exactly once at the handset", false, 0},
		{"gateway ignores them: the one message in the window arrives twice, counted", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, worldConfig{n: crashN, gateway: sim.GatewayConfig{IgnoreIdempotency: tc.ignoreIdempotency}})
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashChildEnv+"=1", "NOTIFY_CRASH_DB="+w.db.URL,
				"NOTIFY_CRASH_GW="+w.gwURL, "NOTIFY_CRASH_KEY="+w.encKey, "NOTIFY_CRASH_AFTER="+strconv.Itoa(crashAfter))
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "the child must die: %s", out)
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			require.True(t, ok)
			require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child ended with %v, not SIGKILL: %s", cmd.ProcessState, out)

			// The crash left the 4th message taken by the gateway but
			// pending in the outbox, under the dead worker's lease.
			crashKey := w.seeded.Keys[crashAfter-1]
			require.Equal(t, 1, w.gw.AcceptedKey(crashKey))
			var state string
			var owner *string
			require.NoError(t, w.db.Pool.QueryRow(context.Background(),
				`SELECT state, lease_owner FROM outbox WHERE idempotency_key = $1`, crashKey).Scan(&state, &owner))
			require.Equal(t, "pending", state)
			require.NotNil(t, owner, "the dead worker's lease")
			require.Equal(t, crashAfter-1, w.counts(t).Sent)

			restarted := w.worker(t, notify.Config{Lease: time.Second, SendTimeout: 300 * time.Millisecond}, notify.GatewayConfig{})
			drain(t, restarted, 30*time.Second)

			h := w.gw.Handsets()
			require.Equal(t, tc.wantDuplicates, h.Duplicates(), "duplicates at the handset")
			require.Equal(t, 1+tc.wantDuplicates, h.ReceivedKey(crashKey))
			for i, k := range w.seeded.Keys {
				if k != crashKey {
					require.Equal(t, 1, h.ReceivedKey(k), "message %d", i)
				}
			}
			// Counted and reported: the restarted worker knows it resent
			// after an unfinished attempt, and the row says so.
			require.Equal(t, int64(1), restarted.Stats().Reclaimed)
			c := w.counts(t)
			require.Equal(t, 1, c.UnconfirmedSends)
			require.Equal(t, crashN, c.Sent)
			var unconfirmed int
			require.NoError(t, w.db.Pool.QueryRow(context.Background(),
				`SELECT unconfirmed_sends FROM outbox WHERE idempotency_key = $1`, crashKey).Scan(&unconfirmed))
			require.Equal(t, 1, unconfirmed)
			st := w.gw.Stats()
			if tc.ignoreIdempotency {
				require.Equal(t, 1, st.RepeatedKeys)
			} else {
				require.Equal(t, 1, st.Suppressed, "the resend was answered from the gateway's record")
				require.Equal(t, int64(1), restarted.Stats().Duplicate)
			}
		})
	}
}

// crashChild is the worker process of TestCrashBetweenAcceptAndMarkSent.
func crashChild() {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(5)
	}
	pool, err := postgres.Open(ctx, os.Getenv("NOTIFY_CRASH_DB"))
	if err != nil {
		fail(err)
	}
	ks, err := keys.ParseKeys(os.Getenv("NOTIFY_CRASH_KEY"), 32)
	if err != nil {
		fail(err)
	}
	sealer, err := keys.NewSealer(ks)
	if err != nil {
		fail(err)
	}
	after, _ := strconv.Atoi(os.Getenv("NOTIFY_CRASH_AFTER"))
	gw, err := notify.NewGateway(notify.GatewayConfig{URL: os.Getenv("NOTIFY_CRASH_GW")})
	if err != nil {
		fail(err)
	}
	accepted := 0
	w, err := notify.New(notify.Config{
		Outbox: &postgres.OutboxStore{Pool: pool}, Gateway: gw, Phones: sealer, Campaigns: &postgres.CampaignStore{Pool: pool},
		BatchSize: 1, Concurrency: 1, Loops: 1, Rate: math.Inf(1),
		Lease: time.Second, SendTimeout: 300 * time.Millisecond,
		AfterAccept: func(notify.Message) {
			if accepted++; accepted == after {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		},
	})
	if err != nil {
		fail(err)
	}
	for {
		n, err := w.DrainOnce(ctx)
		if err != nil {
			fail(err)
		}
		if n == 0 {
			fail(fmt.Errorf("drained without reaching the crash point"))
		}
	}
}

func TestOutageOpensBreakerAndLosesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 40, gateway: sim.GatewayConfig{Faults: sim.SMSFaults{Down: true}}})
	wk := w.worker(t, notify.Config{
		BatchSize: 8, Concurrency: 2, Loops: 1, RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond,
		BreakerPause: 100 * time.Millisecond,
	}, notify.GatewayConfig{TripAfter: 3, BreakerTimeout: 200 * time.Millisecond})
	require.NoError(t, wk.Start(context.Background()))
	t.Cleanup(wk.Stop)

	// Stay down through two failed probes (open, half-open, open again):
	// long enough for a worker that ignored the breaker to call the
	// gateway for every message and retry.
	require.Eventually(t, func() bool { return wk.Stats().BreakerOpens >= 3 }, 10*time.Second, 10*time.Millisecond,
		"the breaker to open, and to open again after two failed probes")
	refusedWhileDown := w.gw.Stats().Refused
	// An open breaker keeps the worker off the gateway: a probe every
	// BreakerTimeout, not a send per message and retry.
	require.Less(t, refusedWhileDown, 30, "calls to a gateway that is down")
	c := w.counts(t)
	require.Equal(t, 40, c.Pending, "nothing lost, nothing failed")
	require.Zero(t, c.Failed)

	w.gw.SetFaults(sim.SMSFaults{})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.Equal(c, 40, w.counts(c).Sent)
	}, 20*time.Second, 10*time.Millisecond, "waiting for the outbox to drain after the outage")
	wk.Stop()
	w.requireEachOnce(t)
	require.Zero(t, wk.Stats().Failed)
}

func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 40, gateway: sim.GatewayConfig{Faults: sim.SMSFaults{ErrorRate: 0.3}}})
	wk := w.worker(t, notify.Config{BatchSize: 10, Concurrency: 4, RetryBase: 5 * time.Millisecond, RetryCap: 40 * time.Millisecond},
		notify.GatewayConfig{TripAfter: 1000})
	drain(t, wk, 30*time.Second)
	w.requireEachOnce(t)
	st := wk.Stats()
	require.Positive(t, st.Retried, "a 30%% error rate must have caused retries")
	require.Equal(t, int64(40), st.Sent)
	var attempts int
	require.NoError(t, w.db.Pool.QueryRow(context.Background(), `SELECT sum(attempts) FROM outbox`).Scan(&attempts))
	require.Equal(t, int(st.Sent+st.Retried), attempts)
}

func TestRateLimitIsReachedAndNeverExceeded(t *testing.T) {
	t.Parallel()
	const n, perSecond = 61, 30.0
	// The gateway enforces the same account limit, with a bucket of 5 for
	// the jitter between notify's departures and its arrivals; notify must
	// never run into it.
	w := newWorld(t, worldConfig{n: n, gateway: sim.GatewayConfig{Rate: perSecond, Burst: 5}})
	wk := w.worker(t, notify.Config{Rate: perSecond, Burst: 1, BatchSize: 64, Concurrency: 8}, notify.GatewayConfig{})
	drain(t, wk, 30*time.Second)
	w.requireEachOnce(t)

	var at []time.Time
	for _, a := range w.gw.Attempts() {
		require.Equal(t, http.StatusAccepted, a.Status, "the gateway's own limit was hit")
		at = append(at, a.At)
	}
	require.Len(t, at, n)
	maxInWindow := 0
	for i := range at {
		k := i
		for k < len(at) && at[k].Sub(at[i]) < time.Second {
			k++
		}
		maxInWindow = max(maxInWindow, k-i)
	}
	// Departures are spaced exactly; arrivals may bunch by a few
	// scheduling delays on a loaded machine.
	require.LessOrEqual(t, maxInWindow, int(perSecond)+3, "messages arriving in one second")
	span := at[len(at)-1].Sub(at[0]).Seconds()
	ideal := float64(n-1) / perSecond
	require.GreaterOrEqual(t, span, 0.95*ideal, "faster than the limit")
	require.LessOrEqual(t, span, 1.5*ideal, "the limit was not reached: %.2fs for %.2fs of tokens", span, ideal)
}

// TestGatewayRateLimitIsNotAFailure: a gateway whose account limit is
// far below notify's own rate refuses most sends with 429. Those are not
// failed attempts (no message backs off for minutes because it met the
// limit often), and the worker slows down to the limit instead of
// spending most of its calls on refusals.
func TestGatewayRateLimitIsNotAFailure(t *testing.T) {
	t.Parallel()
	const n, limit = 60, 20.0
	w := newWorld(t, worldConfig{n: n, gateway: sim.GatewayConfig{Rate: limit, Burst: 1}})
	wk := w.worker(t, notify.Config{Rate: 400, Burst: 1, BatchSize: 64, Concurrency: 8, RetryBase: 2 * time.Second, RetryCap: time.Minute},
		notify.GatewayConfig{TripAfter: 1000})
	drain(t, wk, 30*time.Second)
	w.requireEachOnce(t)
	var attempts int
	require.NoError(t, w.db.Pool.QueryRow(context.Background(), `SELECT sum(attempts) FROM outbox`).Scan(&attempts))
	require.Equal(t, n, attempts, "a 429 is not an attempt")
	refused := 0
	for _, a := range w.gw.Attempts() {
		if a.Status == http.StatusTooManyRequests {
			refused++
		}
	}
	require.Positive(t, refused, "the gateway's limit was met")
	require.Less(t, refused, 4*n, "the worker slowed to the limit rather than ask %d times", refused)
}

func TestTwoWorkersNeverSendTheSameMessage(t *testing.T) {
	t.Parallel()
	const n = 300
	// Without idempotency at the gateway, any message sent twice would
	// reach its handset twice.
	w := newWorld(t, worldConfig{n: n, gateway: sim.GatewayConfig{IgnoreIdempotency: true}})
	cfg := notify.Config{BatchSize: 16, Concurrency: 4, Loops: 2}
	a := w.worker(t, cfg, notify.GatewayConfig{})
	b := w.worker(t, cfg, notify.GatewayConfig{})
	ctx := context.Background()
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.Equal(c, n, w.counts(c).Sent)
	}, 30*time.Second, 10*time.Millisecond, "waiting for the outbox to drain")
	a.Stop()
	b.Stop()
	w.requireEachOnce(t)
	require.Equal(t, n, w.gw.Stats().Attempts, "one gateway call per message")
	sa, sb := a.Stats(), b.Stats()
	require.Equal(t, int64(n), sa.Claimed+sb.Claimed)
	require.Positive(t, sa.Claimed, "both workers shared the outbox")
	require.Positive(t, sb.Claimed, "both workers shared the outbox")
}

func TestPermanentFailureStopsAndIsReported(t *testing.T) {
	t.Parallel()
	phone := func(i int) string {
		if i%5 == 0 {
			return fmt.Sprintf("02-555-%04d", i) // a landline: the gateway refuses it
		}
		return fmt.Sprintf("010-3000-%04d", i)
	}
	w := newWorld(t, worldConfig{n: 20, phone: phone})
	wk := w.worker(t, notify.Config{RetryBase: 5 * time.Millisecond}, notify.GatewayConfig{})
	drain(t, wk, 30*time.Second)
	c := w.counts(t)
	require.Equal(t, 4, c.Failed)
	require.Equal(t, 16, c.Sent)
	require.Equal(t, int64(4), wk.Stats().Failed)
	rows, err := w.db.Pool.Query(context.Background(), `SELECT attempts, last_error, failed_at IS NOT NULL FROM outbox WHERE state = 'failed'`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var attempts int
		var lastError string
		var stamped bool
		require.NoError(t, rows.Scan(&attempts, &lastError, &stamped))
		require.Equal(t, 1, attempts, "a permanent failure is not retried")
		require.Contains(t, lastError, "invalid_number")
		require.True(t, stamped)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 20, w.gw.Stats().Attempts)
}

func TestResendIsExplicitAndRecorded(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 3, reports: true})
	srv := httptest.NewServer(notify.ResendHandler(w.store, func(*http.Request) string { return "admin:operator" }, nil))
	t.Cleanup(srv.Close)
	post := func(body string) int {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	appt := w.seeded.Appointments[1]
	require.Equal(t, http.StatusConflict, post(fmt.Sprintf(`{"appointment":%d}`, appt)), "version 1 still waits to be sent")
	require.Equal(t, http.StatusNotFound, post(`{"appointment":999999}`))
	require.Equal(t, http.StatusBadRequest, post(`{"appointment":"x"}`))

	wk := w.worker(t, notify.Config{}, notify.GatewayConfig{})
	drain(t, wk, 30*time.Second)
	require.Equal(t, http.StatusCreated, post(fmt.Sprintf(`{"appointment":%d,"reason":"citizen lost the message"}`, appt)))
	drain(t, wk, 30*time.Second)

	h := w.gw.Handsets()
	require.Equal(t, 2, h.Received(w.seeded.Phones[1]), "the resend arrived")
	require.Zero(t, h.Duplicates(), "a recorded resend is not a duplicate")
	var version int
	var by, reason string
	require.NoError(t, w.db.Pool.QueryRow(context.Background(),
		`SELECT version, requested_by, resend_reason FROM outbox WHERE appointment_id = $1 AND requested_by IS NOT NULL`, appt).Scan(&version, &by, &reason))
	require.Equal(t, 2, version)
	require.Equal(t, "admin:operator", by)
	require.Equal(t, "citizen lost the message", reason)
	require.Equal(t, 1, w.counts(t).Resends)
}

func TestReportWebhookAuthenticatesTheGateway(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 2})
	wk := w.worker(t, notify.Config{}, notify.GatewayConfig{})
	drain(t, wk, 30*time.Second)
	srv := httptest.NewServer(notify.ReportHandler(w.store, []byte(webhookSecret), nil, nil))
	t.Cleanup(srv.Close)
	key := w.seeded.Keys[0]
	report := func(key, status string) []byte {
		return fmt.Appendf(nil, `{"message_id":"gw-1","idempotency_key":%q,"status":%q,"at":"2026-01-01T00:00:00Z"}`, key, status)
	}
	tests := []struct {
		name   string
		body   []byte
		sign   func([]byte) string
		status int
	}{
		{"unsigned", report(key, "delivered"), func([]byte) string { return "" }, http.StatusUnauthorized},
		{"signed with another secret", report(key, "delivered"), func(b []byte) string { return sim.SignReport([]byte("guess"), b, time.Now()) }, http.StatusUnauthorized},
		{"replayed from long ago", report(key, "delivered"), func(b []byte) string { return sim.SignReport([]byte(webhookSecret), b, time.Now().Add(-time.Hour)) }, http.StatusUnauthorized},
		{"unknown message", report("nope:1:v1", "delivered"), func(b []byte) string { return sim.SignReport([]byte(webhookSecret), b, time.Now()) }, http.StatusNotFound},
		{"bad status", report(key, "read"), func(b []byte) string { return sim.SignReport([]byte(webhookSecret), b, time.Now()) }, http.StatusBadRequest},
		{"valid", report(key, "delivered"), func(b []byte) string { return sim.SignReport([]byte(webhookSecret), b, time.Now()) }, http.StatusOK},
		{"the same report again", report(key, "delivered"), func(b []byte) string { return sim.SignReport([]byte(webhookSecret), b, time.Now()) }, http.StatusOK},
	}
	for _, tc := range tests { // in order: the last two build on each other
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(tc.body)))
		require.NoError(t, err)
		if s := tc.sign(tc.body); s != "" {
			req.Header.Set(notify.SignatureHeader, s)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, tc.name)
	}
	c := w.counts(t)
	require.Equal(t, 1, c.Delivered)
	require.Equal(t, 1, c.Sent)
	var n int
	require.NoError(t, w.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM delivery_reports`).Scan(&n))
	require.Equal(t, 1, n, "a report is recorded once")
}

func TestUnansweredCallsAreCounted(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldConfig{n: 5, gateway: sim.GatewayConfig{Faults: sim.SMSFaults{Latency: sim.Duration(5 * time.Second)}}})
	wk := w.worker(t, notify.Config{SendTimeout: time.Second, Lease: 10 * time.Second, RetryBase: 5 * time.Millisecond, RetryCap: 20 * time.Millisecond},
		notify.GatewayConfig{TripAfter: 100})
	n, err := wk.DrainOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, int64(5), wk.Stats().Unanswered, "every call timed out without an answer")
	require.Equal(t, 5, w.counts(t).UnconfirmedSends, "each may have reached the gateway: counted on its row")

	w.gw.SetFaults(sim.SMSFaults{})
	drain(t, wk, 30*time.Second)
	w.requireEachOnce(t)
	c := w.counts(t)
	require.Equal(t, 5, c.Sent)
	// On a loaded machine a retry may time out too: each is counted.
	require.Equal(t, int(wk.Stats().Unanswered), c.UnconfirmedSends)
}
