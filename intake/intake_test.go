package intake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// messages reads every message of the submitted stream.
func (e *env) messages(tb testing.TB) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.js.JS.Stream(ctx, stream.Submitted)
	require.NoError(tb, err)
	info, err := st.Info(ctx)
	require.NoError(tb, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(tb, err)
		out = append(out, m)
	}
	return out
}

func TestSubmitPublishesSealedIntent(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	a := e.post(t, body(map[string]any{"phone": "+82 10-9876-5432", "clinic": "c-11680-001", "earliest": "2021-08-27"}),
		"X-Forwarded-For", "203.0.113.9")
	require.Equal(t, http.StatusAccepted, a.Status, "body: %v", a.Body)
	receipt, _ := a.Body["receipt"].(string)
	require.Len(t, receipt, intake.ReceiptLen)
	require.Equal(t, "received", a.Body["status"])
	require.Equal(t, "/v1/intents/"+receipt, a.Body["status_url"])

	msgs := e.messages(t)
	require.Len(t, msgs, 1, "one message in %s", stream.Submitted)
	m := msgs[0]
	require.Equal(t, receipt, m.Header.Get(jetstream.MsgIDHeader), "Nats-Msg-Id is the receipt")
	require.Equal(t, stream.SubmittedSubject(prereg.Shard(receipt, e.c.Shards)), m.Subject)
	for _, plain := range []string{"9876", "98765432", "device-1"} {
		require.NotContains(t, string(m.Data), plain, "no plain phone or device id in the stream")
	}
	var in prereg.Intent
	require.NoError(t, json.Unmarshal(m.Data, &in))
	require.Equal(t, receipt, in.Receipt)
	require.Equal(t, "test-2021", in.Campaign)
	require.Equal(t, "d9", in.Window)
	require.Equal(t, "pass", in.Provider)
	require.Equal(t, "tok-abc.def", in.IdentityToken)
	require.Equal(t, "1990-08-19", in.Birthdate)
	require.Equal(t, "11680", in.Region)
	require.Equal(t, "c-11680-001", in.Clinic)
	require.Equal(t, "2021-08-27", in.Earliest)
	h := keys.NewHasher(testHMAC)
	require.Equal(t, h.Sum(keys.PurposeDevice, "test-2021", "device-1"), in.DeviceKey)
	require.NotEmpty(t, in.AddrKey)
	require.True(t, in.ReceivedAt.Equal(e.clock.Now()))
	phone, err := testSealer(t).Open(in.Phone, []byte("test-2021"))
	require.NoError(t, err)
	require.Equal(t, "+821098765432", string(phone), "phone normalised to E.164 and sealed with the campaign as AAD")
	_, err = testSealer(t).Open(in.Phone, []byte("other-campaign"))
	require.Error(t, err, "the sealed phone is bound to its campaign")

	require.Equal(t, 1.0, mustCounter(t, e, "submit", "202"))
}

func mustCounter(tb testing.TB, e *env, route, status string) float64 {
	tb.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != "prereg_intake_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["status"] == status {
				return m.GetCounter().GetValue()
			}
		}
	}
	tb.Fatalf("no requests counter for %s %s", route, status)
	return 0
}

func TestSubmitErrors(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) { c.DeviceRate, c.DeviceBurst = 0.001, 1 })
	tests := []struct {
		name    string
		body    any
		headers []string
		status  int
		code    string
		field   string
	}{
		{name: "not json", body: body(nil), headers: []string{"Content-Type", "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "json in latin-1", body: body(nil), headers: []string{"Content-Type", "application/json; charset=iso-8859-1"}, status: 415, code: "unsupported_media_type"},
		{name: "too large", body: `{"campaign":"` + strings.Repeat("x", 5000) + `"}`, status: 413, code: "too_large"},
		{name: "not an object", body: `[1,2]`, status: 400, code: "invalid", field: "body"},
		{name: "broken json", body: `{"campaign":`, status: 400, code: "invalid", field: "body"},
		{name: "two objects", body: `{"campaign":"test-2021"}{}`, status: 400, code: "invalid", field: "body"},
		{name: "unknown field", body: body(map[string]any{"name": "Hong"}), status: 400, code: "invalid", field: "name"},
		{name: "number for a string", body: body(map[string]any{"region": 11680}), status: 400, code: "invalid", field: "region"},
		{name: "unknown campaign", body: body(map[string]any{"campaign": "nope"}), status: 404, code: "not_found"},
		{name: "unknown provider", body: body(map[string]any{"provider": "naver"}), status: 400, code: "invalid", field: "provider"},
		{name: "no token", body: body(map[string]any{"identity_token": nil}), status: 400, code: "invalid", field: "identity_token"},
		{name: "not a date", body: body(map[string]any{"birthdate": "1990-02-30"}), status: 400, code: "invalid", field: "birthdate"},
		{name: "outside cohort", body: body(map[string]any{"birthdate": "1969-08-19"}), status: 400, code: "invalid", field: "birthdate"},
		{name: "landline", body: body(map[string]any{"phone": "02-123-4567"}), status: 400, code: "invalid", field: "phone"},
		{name: "foreign phone", body: body(map[string]any{"phone": "+1 415 555 0100"}), status: 400, code: "invalid", field: "phone"},
		{name: "unknown region", body: body(map[string]any{"region": "99999"}), status: 400, code: "invalid", field: "region"},
		{name: "bad clinic", body: body(map[string]any{"clinic": "<script>"}), status: 400, code: "invalid", field: "clinic"},
		{name: "bad earliest", body: body(map[string]any{"earliest": "soon"}), status: 400, code: "invalid", field: "earliest"},
		{name: "no device", body: body(map[string]any{"device_id": nil}), status: 400, code: "invalid", field: "device_id"},
		{name: "long idempotency key", body: body(nil), headers: []string{"Idempotency-Key", strings.Repeat("k", 129)}, status: 400, code: "invalid", field: "Idempotency-Key"},
		{name: "window closed", body: body(map[string]any{"birthdate": "1990-08-10", "device_id": "d-closed"}), status: 403, code: "window_closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.post(t, tt.body, tt.headers...)
			require.Equal(t, tt.status, a.Status, "body: %v", a.Body)
			require.Equal(t, tt.code, a.Body["error"])
			if tt.field != "" {
				fields, _ := a.Body["fields"].(map[string]any)
				require.Contains(t, fields, tt.field)
			}
		})
	}
	t.Run("window closed names the next window", func(t *testing.T) {
		a := e.post(t, body(map[string]any{"birthdate": "1985-03-30", "device_id": "d-next"}))
		require.Equal(t, 403, a.Status)
		nw, _ := a.Body["next_window"].(map[string]any)
		require.Equal(t, "d0", nw["id"])
		require.Equal(t, []any{0.0}, nw["digits"])
		opens, err := time.Parse(time.RFC3339, nw["opens"].(string))
		require.NoError(t, err)
		require.True(t, opens.Equal(at("2021-08-10 20:00:00")), "opens %s", opens)
	})
	t.Run("per-device limit", func(t *testing.T) {
		b := body(map[string]any{"device_id": "d-limit"})
		require.Equal(t, 202, e.post(t, b).Status)
		a := e.post(t, b)
		require.Equal(t, 429, a.Status)
		require.Equal(t, "rate_limited", a.Body["error"])
		require.NotEmpty(t, a.Header.Get("Retry-After"))
	})
	require.Empty(t, e.messages(t)[1:], "only the one accepted intent was published")
}

func TestAddressLimitTrustsOnlyProxies(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) {
		c.AddrRate, c.AddrBurst = 0.001, 2
		c.DeviceRate = -1
	})
	// The test client is 127.0.0.1 and not a trusted proxy, so a forged
	// X-Forwarded-For does not buy a fresh bucket.
	for i := range 2 {
		require.Equal(t, 202, e.post(t, body(nil), "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i)).Status)
	}
	a := e.post(t, body(nil), "X-Forwarded-For", "198.51.100.77")
	require.Equal(t, 429, a.Status)
	require.Equal(t, "address", a.Body["limit"])
	require.NotEmpty(t, a.Header.Get("Retry-After"))
}

func TestWindows(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) { c.DeviceRate = -1 })
	type step struct {
		now    string
		birth  string
		status int
		window string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "opening second", steps: []step{
			{"2021-08-09 19:59:59", "1990-08-19", 403, ""},
			{"2021-08-09 20:00:00", "1990-08-19", 202, "d9"},
		}},
		{name: "closing second", steps: []step{
			{"2021-08-10 17:59:59", "1990-08-19", 202, "d9"},
			{"2021-08-10 18:00:00", "1990-08-19", 403, ""},
		}},
		{name: "29 February is digit 9", steps: []step{
			{"2021-08-09 20:00:00", "1996-02-29", 202, "d9"},
			{"2021-08-10 20:00:00", "1996-02-29", 403, ""},
		}},
		{name: "29 February of a common year is not a date", steps: []step{
			{"2021-08-09 20:00:00", "1997-02-29", 400, ""},
		}},
		{name: "catch-up admits every digit", steps: []step{
			{"2021-08-19 20:00:00", "1990-08-13", 202, "catch-up"},
			{"2021-08-21 17:59:59", "1990-08-20", 202, "catch-up"},
			{"2021-08-21 18:00:00", "1990-08-20", 403, ""},
		}},
	}
	// Every digit: its own day admits it, the day before does not.
	for d := range 10 {
		open := at("2021-08-10 20:00:00").AddDate(0, 0, d) // d0 opens on the 10th, d1 on the 11th, ...
		if d == 9 {
			open = at("2021-08-09 20:00:00")
		}
		birth := fmt.Sprintf("1988-01-%02d", 10+d)
		if d == 0 {
			birth = "1988-01-20"
		}
		tests = append(tests, struct {
			name  string
			steps []step
		}{name: fmt.Sprintf("digit %d", d), steps: []step{
			{open.Add(-time.Second).Format("2006-01-02 15:04:05"), birth, 403, ""},
			{open.Format("2006-01-02 15:04:05"), birth, 202, fmt.Sprintf("d%d", d)},
			{open.Add(22*time.Hour - time.Second).Format("2006-01-02 15:04:05"), birth, 202, fmt.Sprintf("d%d", d)},
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range tt.steps {
				e.clock.Set(at(s.now))
				a := e.post(t, body(map[string]any{"birthdate": s.birth}))
				require.Equal(t, s.status, a.Status, "born %s at %s: %v", s.birth, s.now, a.Body)
				if s.status == 403 {
					require.Equal(t, "window_closed", a.Body["error"])
				}
			}
		})
	}
	// The windows the 202s were published in.
	var windows []string
	for _, m := range e.messages(t) {
		var in prereg.Intent
		require.NoError(t, json.Unmarshal(m.Data, &in))
		windows = append(windows, in.Window)
	}
	require.Contains(t, windows, "catch-up")
	for d := range 10 {
		require.Contains(t, windows, fmt.Sprintf("d%d", d))
	}
}

func TestIdempotencyAcrossInstances(t *testing.T) {
	t.Parallel()
	js := streamtest.New(t, stream.Config{})
	noLimits := func(c *intake.Config) { c.DeviceRate = -1 }
	a, b := setupOn(t, js, noLimits), setupOn(t, js, noLimits)

	first := a.post(t, body(nil), "Idempotency-Key", "key-1")
	require.Equal(t, 202, first.Status, "%v", first.Body)
	second := b.post(t, body(map[string]any{"phone": "01012345678"}), "Idempotency-Key", "key-1")
	require.Equal(t, 202, second.Status, "the same body (phone written differently) on another replica: %v", second.Body)
	require.Equal(t, first.Body["receipt"], second.Body["receipt"], "the same key from the same device gets the same receipt")
	require.Len(t, a.messages(t), 1, "the stream de-duplicated the retry")

	reused := b.post(t, body(map[string]any{"region": "26350"}), "Idempotency-Key", "key-1")
	require.Equal(t, 422, reused.Status)
	require.Equal(t, "idempotency_key_reused", reused.Body["error"])

	other := a.post(t, body(map[string]any{"device_id": "device-2"}), "Idempotency-Key", "key-1")
	require.Equal(t, 202, other.Status)
	require.NotEqual(t, first.Body["receipt"], other.Body["receipt"], "another device's key is another submission")

	plain1, plain2 := a.post(t, body(nil)), a.post(t, body(nil))
	require.NotEqual(t, plain1.Body["receipt"], plain2.Body["receipt"], "without a key every submission is new")
	require.Len(t, a.messages(t), 4)
}

func TestShedsWhenStreamFull(t *testing.T) {
	t.Parallel()
	js := streamtest.New(t, stream.Config{SubmittedMaxBytes: 2 << 10})
	e := setupOn(t, js, func(c *intake.Config) { c.DeviceRate = -1 })
	var last answer
	for range 20 {
		last = e.post(t, body(nil))
		if last.Status != 202 {
			break
		}
	}
	require.Equal(t, 503, last.Status, "a full stream sheds: %v", last.Body)
	require.Equal(t, "overloaded", last.Body["error"])
	require.Equal(t, "1", last.Header.Get("Retry-After"))
	require.ErrorContains(t, e.svc.Ready(context.Background()), "storage full")
	// Shedding is quick while the stream is full, and ends by itself.
	require.Equal(t, 503, e.post(t, body(nil)).Status)
	e.clock.Set(e.clock.Now().Add(2 * time.Second))
	require.NoError(t, e.svc.Ready(context.Background()))
}

func TestShedsWhileJetStreamDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	js := streamtest.NewWith(t, stream.EmbeddedConfig{StoreDir: dir}, stream.Config{})
	e := setupOn(t, js, func(c *intake.Config) { c.DeviceRate = -1 })
	require.Equal(t, 202, e.post(t, body(nil)).Status)
	port := js.Server().Addr().(*net.TCPAddr).Port
	js.Server().Shutdown()
	js.Server().WaitForShutdown()
	require.Eventually(t, func() bool { return !js.NC.IsConnected() }, 5*time.Second, 10*time.Millisecond)

	start := time.Now()
	a := e.post(t, body(nil))
	require.Equal(t, 503, a.Status)
	require.Less(t, time.Since(start), time.Second, "shedding answers at once, without waiting for a timeout")
	require.NotEmpty(t, a.Header.Get("Retry-After"))
	require.ErrorContains(t, e.svc.Ready(context.Background()), "unreachable")

	// The same server comes back on the same port and store: ready again
	// without restarting intake.
	again, err := stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: port})
	require.NoError(t, err)
	t.Cleanup(again.Shutdown)
	require.Eventually(t, func() bool { return e.svc.Ready(context.Background()) == nil }, 10*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool { return e.post(t, body(nil)).Status == 202 }, 10*time.Second, 100*time.Millisecond)
}

func TestCampaignFromMemory(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	a := e.get(t, "/v1/campaigns/test-2021")
	require.Equal(t, 200, a.Status)
	etag := a.Header.Get("ETag")
	require.NotEmpty(t, etag)
	require.Contains(t, a.Header.Get("Cache-Control"), "max-age=")
	require.Equal(t, "test-2021", a.Body["id"])
	windows, _ := a.Body["windows"].([]any)
	require.Len(t, windows, 11)
	last := windows[10].(map[string]any)
	require.Len(t, last["digits"], 10, "a catch-up window lists every digit")
	providers, _ := a.Body["providers"].([]any)
	require.Len(t, providers, 2)
	require.Equal(t, "unknown", providers[0].(map[string]any)["health"].(map[string]any)["state"], "no health bucket: unknown")

	require.Equal(t, 304, e.get(t, "/v1/campaigns/test-2021", "If-None-Match", etag).Status)
	require.Equal(t, 404, e.get(t, "/v1/campaigns/nope").Status)

	// verify reports a breaker state; the next refresh shows it.
	ctx := context.Background()
	kv, err := e.js.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: prereg.ProviderHealthBucket})
	require.NoError(t, err)
	_, err = kv.Put(ctx, "test-2021.pass", []byte(`{"state":"open","error_rate":0.75,"updated":"2021-08-09T21:00:00+09:00"}`))
	require.NoError(t, err)
	require.NoError(t, e.svc.Refresh(ctx))
	a = e.get(t, "/v1/campaigns/test-2021", "If-None-Match", etag)
	require.Equal(t, 200, a.Status, "the health changed, so did the ETag")
	h := a.Body["providers"].([]any)[0].(map[string]any)["health"].(map[string]any)
	require.Equal(t, "open", h["state"])
	require.Equal(t, 0.75, h["error_rate"])
	require.Equal(t, "unknown", a.Body["providers"].([]any)[1].(map[string]any)["health"].(map[string]any)["state"])
}

func TestCitizenPage(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	for _, tt := range []struct{ lang, want string }{{"ko", "접수 일정"}, {"en", "Schedule"}} {
		req, err := http.NewRequest(http.MethodGet, e.url+"/?lang="+tt.lang, nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(t, res))
		require.Equal(t, 200, res.StatusCode)
		require.Contains(t, res.Header.Get("Content-Type"), "text/html")
		require.Contains(t, b.String(), tt.want)
		require.Contains(t, b.String(), `class="open"`, "the open window is marked")
		require.Contains(t, b.String(), "/assets/intake.js")
		// No external assets: the only absolute addresses are the
		// providers' sign-in pages the browser is sent to.
		require.NotRegexp(t, `(?i)(src=|<link|@import|url\()\s*["']?(https?:)?//`, b.String(), "no external assets")
	}
	js := e.get(t, "/assets/intake.js")
	require.Equal(t, 200, js.Status)
	require.Contains(t, js.Header.Get("Content-Type"), "javascript")
}

func readAll(tb testing.TB, res *http.Response) string {
	tb.Helper()
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestStopFinishesPublishesInFlight(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) { c.DeviceRate = -1 })
	const n = 64
	results := make(chan answer, n)
	for i := range n {
		go func() {
			results <- e.post(t, body(map[string]any{"device_id": fmt.Sprintf("dev-%d", i)}))
		}()
	}
	accepted := map[string]bool{}
	answered := 0
	take := func() {
		a := <-results
		answered++
		switch a.Status {
		case 202:
			accepted[a.Body["receipt"].(string)] = true
		case 503:
			require.Equal(t, "overloaded", a.Body["error"])
		default:
			t.Fatalf("status %d during shutdown: %v", a.Status, a.Body)
		}
	}
	// Stop once the first intent is accepted: the others are in flight
	// then, some of them publishing.
	for len(accepted) == 0 && answered < n {
		take()
	}
	e.svc.Stop()
	for answered < n {
		take()
	}
	require.NotEmpty(t, accepted, "intake accepted none of %d intents before it stopped", n)
	inStream := map[string]bool{}
	for _, m := range e.messages(t) {
		inStream[m.Header.Get(jetstream.MsgIDHeader)] = true
	}
	for receipt := range accepted {
		require.True(t, inStream[receipt], "every 202 is in the stream: %d accepted, %d in the stream", len(accepted), len(inStream))
	}
	require.Equal(t, 503, e.post(t, body(nil)).Status, "a stopped intake refuses new intents")
}
