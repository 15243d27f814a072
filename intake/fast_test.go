package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// rawRequest is one request of the parity test, sent as is to each server.
type rawRequest struct {
	name    string
	method  string
	path    string
	headers []string // name, value pairs
	body    []byte
	chunked bool // send without Content-Length
}

func (r rawRequest) send(t *testing.T, base string) answer {
	t.Helper()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // hides the length: sent chunked
		}
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(r.headers); i += 2 {
		req.Header.Set(r.headers[i], r.headers[i+1])
	}
	return do(t, req)
}

// TestFastFrontAnswersAsNetHTTP holds intake's fasthttp front (the server
// `prereg serve` runs intake on) to the same answers as the same service on
// net/http, for the submit route it serves natively and for routes it
// passes through.
func TestFastFrontAnswersAsNetHTTP(t *testing.T) {
	// Both servers share one service: no device limit, or the second
	// server's answers would be 429s.
	e := setup(t, func(c *intake.Config) { c.DeviceRate = -1 })
	valid, err := json.Marshal(body(nil))
	require.NoError(t, err)
	jsonCT := []string{"Content-Type", "application/json"}
	big := append(append([]byte(`{"campaign":"`), bytes.Repeat([]byte("x"), 10<<10)...), `"}`...)
	huge := append(append([]byte(`{"campaign":"`), bytes.Repeat([]byte("x"), 100<<10)...), `"}`...)
	cases := []rawRequest{
		{name: "idempotent 202", method: "POST", path: "/v1/intents", headers: append(jsonCT, "Idempotency-Key", "k-1"), body: valid},
		{name: "with a query", method: "POST", path: "/v1/intents?x=1", headers: append(jsonCT, "Idempotency-Key", "k-2"), body: valid},
		{name: "charset", method: "POST", path: "/v1/intents", headers: []string{"Content-Type", "application/json; charset=utf-8", "Idempotency-Key", "k-3"}, body: valid},
		{name: "not JSON", method: "POST", path: "/v1/intents", headers: jsonCT, body: []byte(`{"campaign":`)},
		{name: "unknown field", method: "POST", path: "/v1/intents", headers: jsonCT, body: []byte(`{"campaign":"test-2021","shoe_size":"9"}`)},
		{name: "two objects", method: "POST", path: "/v1/intents", headers: jsonCT, body: append(append([]byte{}, valid...), valid...)},
		{name: "wrong media type", method: "POST", path: "/v1/intents", headers: []string{"Content-Type", "text/plain"}, body: valid},
		{name: "latin-1", method: "POST", path: "/v1/intents", headers: []string{"Content-Type", "application/json; charset=latin1"}, body: valid},
		{name: "too large", method: "POST", path: "/v1/intents", headers: jsonCT, body: big},
		{name: "far too large", method: "POST", path: "/v1/intents", headers: jsonCT, body: huge},
		{name: "too large, chunked", method: "POST", path: "/v1/intents", headers: jsonCT, body: big, chunked: true},
		{name: "valid, chunked", method: "POST", path: "/v1/intents", headers: append(jsonCT, "Idempotency-Key", "k-4"), body: valid, chunked: true},
		{name: "bad idempotency key", method: "POST", path: "/v1/intents", headers: append(jsonCT, "Idempotency-Key", "é"), body: valid},
		{name: "unknown campaign", method: "POST", path: "/v1/intents", headers: jsonCT, body: []byte(`{"campaign":"nope","provider":"pass","identity_token":"t","birthdate":"1990-08-19","phone":"010-1234-5678","region":"11680","device_id":"d"}`)},
		{name: "GET on submit", method: "GET", path: "/v1/intents"},
		{name: "status of a forged receipt", method: "GET", path: "/v1/intents/forged"},
		{name: "change of a forged receipt", method: "PATCH", path: "/v1/intents/forged", headers: jsonCT, body: []byte(`{"birthdate":"1990-08-19","clinic":"c1"}`)},
		{name: "cancel of a forged receipt", method: "POST", path: "/v1/intents/forged/cancel", headers: jsonCT, body: []byte(`{"birthdate":"1990-08-19"}`)},
		{name: "cancel, not JSON", method: "POST", path: "/v1/intents/forged/cancel", headers: jsonCT, body: []byte(`{"birthdate":`)},
		{name: "campaign", method: "GET", path: "/v1/campaigns/test-2021"},
		{name: "no such route", method: "GET", path: "/nowhere"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.send(t, e.stdURL)
			got := c.send(t, e.url)
			assert.Equal(t, want.Status, got.Status, "status")
			assert.Equal(t, want.Body, got.Body, "body")
			for _, h := range []string{"Content-Type", "Retry-After", "ETag", "Cache-Control", "Allow"} {
				assert.Equal(t, want.Header.Get(h), got.Header.Get(h), h)
			}
		})
	}
}

// TestFastFrontLimits: what only the front answers (headers too long) is a
// JSON error too, and a handler's panic is a 500, not a dead process.
func TestFastFrontLimits(t *testing.T) {
	e := setup(t, nil)
	a := rawRequest{method: "GET", path: "/v1/campaigns/test-2021", headers: []string{"X-Padding", strings.Repeat("p", 16<<10)}}.send(t, e.url)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, a.Status)
	assert.Equal(t, "headers_too_large", a.Body["error"])

	panicky := e.svc.FastServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = panicky.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = panicky.ShutdownWithContext(ctx)
	})
	base := "http://" + ln.Addr().String()
	for range 2 { // the second answer shows the server survived the first
		a := rawRequest{method: "GET", path: "/v1/campaigns/test-2021"}.send(t, base)
		assert.Equal(t, http.StatusInternalServerError, a.Status)
		assert.Equal(t, "internal", a.Body["error"])
	}
}

// TestFastFrontRefusesAtOnce: a submission refused before it is read (here
// intake is draining; the CPU guard takes the same path) gets the same 503
// from the front as from net/http, and its connection is kept.
func TestFastFrontRefusesAtOnce(t *testing.T) {
	e := setup(t, func(c *intake.Config) { c.DeviceRate = -1 })
	valid, err := json.Marshal(body(nil))
	require.NoError(t, err)
	e.svc.Stop()
	r := rawRequest{method: "POST", path: "/v1/intents", headers: []string{"Content-Type", "application/json"}, body: valid}
	want, got := r.send(t, e.stdURL), r.send(t, e.url)
	require.Equal(t, http.StatusServiceUnavailable, got.Status)
	assert.Equal(t, want.Body, got.Body, "body")
	for _, h := range []string{"Content-Type", "Retry-After"} {
		assert.Equal(t, want.Header.Get(h), got.Header.Get(h), h)
	}
	assert.NotEqual(t, "close", got.Header.Get("Connection"), "the connection is kept alive")
}

// TestFastFrontRequestContext holds the context a request handler gets
// from the fasthttp front to a context's contract past the request: fasthttp
// reuses its request object for the connection's next request, and a
// context kept from an earlier one (a timeout's watcher, a retry) must not
// read it — the race detector fails this test if it does. The context is
// still done when the server shuts down.
func TestFastFrontRequestContext(t *testing.T) {
	e := setup(t, nil)
	kept := make(chan context.Context, 1)
	fast := e.svc.FastServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case kept <- r.Context():
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- fast.Serve(ln) }()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	get := func() {
		res, err := client.Get("http://" + ln.Addr().String() + "/anything")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, res.Body)
		require.NoError(t, res.Body.Close())
		require.Equal(t, http.StatusNoContent, res.StatusCode)
	}
	get()
	ctx := <-kept

	type key struct{}
	stop := make(chan struct{})
	used := make(chan struct{})
	go func() {
		defer close(used)
		for {
			select {
			case <-stop:
				return
			default:
			}
			assert.Nil(t, ctx.Value(key{}))
			assert.NoError(t, ctx.Err())
			_, cancel := context.WithTimeout(ctx, time.Hour)
			cancel()
		}
	}()
	for range 50 {
		get() // the same connection, so the same request object
	}
	close(stop)
	<-used

	derived, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	shut, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	require.NoError(t, fast.ShutdownWithContext(shut))
	require.NoError(t, <-served)
	select {
	case <-derived.Done():
		require.ErrorIs(t, derived.Err(), context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("a request's context is not done when the server shuts down")
	}
}
