package intake_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
)

// BenchmarkSubmit is one accepted intent through the net/http handler in
// process, publish and acknowledgement included: its allocs/op are the
// submit path's, which must not grow (intake is the hot path). With an
// Idempotency-Key each new key records the body's hash in the
// stream.ReceiptBodies bucket first (idempotency_key_first, what the
// page sends); with the same key every round after the first is a retry,
// which finds the hash recorded there.
func BenchmarkSubmit(b *testing.B) {
	e := setup(b, func(c *intake.Config) {
		c.DeviceRate = -1   // one device sends every round
		c.MaxQueueWait = -1 // a loaded test machine must not shed
	})
	h := e.svc.Handler()
	raw, err := json.Marshal(body(nil))
	require.NoError(b, err)
	for _, idemKey := range []string{"", "first", "bench-key-1"} {
		name := "plain"
		switch idemKey {
		case "first":
			name = "idempotency_key_first"
		case "bench-key-1":
			name = "idempotency_key"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/intents", bytes.NewReader(raw))
				req.Header.Set("Content-Type", "application/json")
				switch idemKey {
				case "":
				case "first":
					n++
					req.Header.Set("Idempotency-Key", "bench-first-"+strconv.Itoa(n))
				default:
					req.Header.Set("Idempotency-Key", idemKey)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("status %d, want 202: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkClinicList is GET /v1/campaigns/{id}/clinics?region= through
// the net/http handler, over the example campaign's 14,000 clinics: the
// lookup every citizen's page makes, a map lookup and a write of an answer
// encoded once per campaign load; with If-None-Match, the 304 of a page
// that has the list.
func BenchmarkClinicList(b *testing.B) {
	c, err := campaign.LoadFile("../campaigns/covid-2021-18-49.yaml")
	require.NoError(b, err)
	c.ID = "test-2021"
	e := setup(b, func(cfg *intake.Config) { cfg.Campaigns = staticCampaigns{c} })
	h := e.svc.Handler()
	path := "/v1/campaigns/test-2021/clinics?region=11680"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	require.Equal(b, http.StatusOK, rec.Code)
	etag := rec.Header().Get("ETag")
	for _, tc := range []struct {
		name, match string
		want        int
	}{{"full", "", http.StatusOK}, {"not_modified", etag, http.StatusNotModified}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			if tc.match != "" {
				req.Header.Set("If-None-Match", tc.match)
			}
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tc.want {
					b.Fatalf("status %d, want %d", rec.Code, tc.want)
				}
			}
		})
	}
}

// BenchmarkFastRefusal is one submission refused first thing (here the
// service is draining; the CPU guard's refusals take the same path)
// through the fasthttp front's handler, in process: under overload most
// answers are this one, and on one core its cost is taken from the
// intents that could be accepted. The socket's read and write, most of a
// refusal's cost over the network, are not in it.
func BenchmarkFastRefusal(b *testing.B) {
	e := setup(b, nil)
	srv := e.svc.FastServer(e.svc.Handler(), nil)
	e.svc.Stop()
	raw, err := json.Marshal(body(nil))
	require.NoError(b, err)
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod(http.MethodPost)
		ctx.Request.SetRequestURI("/v1/intents")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.SetBodyRaw(raw)
		srv.Handler(&ctx)
		if ctx.Response.StatusCode() != http.StatusServiceUnavailable {
			b.Fatalf("status %d, want 503", ctx.Response.StatusCode())
		}
	}
}
