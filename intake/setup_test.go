package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

func TestMain(m *testing.M) {
	pgtest.VerifyMain(m,
		// fasthttp's worker pool cleaner notices its server stopped only
		// when it wakes, up to MaxIdleWorkerDuration (10 s) later.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// fasthttp keeps the Date header's clock in one goroutine per
		// process, started with the first server and never stopped.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

// kst is the campaign's time zone.
var kst = func() *time.Location {
	l, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		panic(err)
	}
	return l
}()

// at is a time in the campaign's zone.
func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, kst)
	if err != nil {
		panic(err)
	}
	return t
}

// clock is a settable clock for windows and token buckets.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.Set(t); return c }
func (c *clock) Set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()) }

// staticCampaigns is a campaign source without a database, for the tests
// of the submit path (which never reads the database anyway).
type staticCampaigns []*campaign.Campaign

func (s staticCampaigns) List(context.Context) ([]*campaign.Campaign, time.Time, error) {
	return s, time.Time{}, nil
}

func testCampaign(tb testing.TB) *campaign.Campaign {
	tb.Helper()
	c, err := campaign.LoadFile("testdata/campaign.yaml")
	require.NoError(tb, err)
	return c
}

var (
	testHMAC = keys.Key{ID: "t1", Secret: bytes.Repeat([]byte{7}, 32)}
	testEnc  = keys.Key{ID: "e1", Secret: bytes.Repeat([]byte{9}, 32)}
)

func testSealer(tb testing.TB) *keys.Sealer {
	tb.Helper()
	s, err := keys.NewSealer([]keys.Key{testEnc})
	require.NoError(tb, err)
	return s
}

// env is one intake under test with its JetStream and clock.
type env struct {
	js  *streamtest.Server
	svc *intake.Service
	// url is intake on its fasthttp front, as `prereg serve` runs it;
	// stdURL the same service on net/http (svc.Handler), which the
	// parity test holds to the same answers.
	url    string
	stdURL string
	clock  *clock
	reg    *prometheus.Registry
	c      *campaign.Campaign
}

// setup starts an intake on a fresh JetStream; tweak adjusts its config.
func setup(tb testing.TB, tweak func(*intake.Config)) *env {
	tb.Helper()
	return setupOn(tb, streamtest.New(tb, stream.Config{}), tweak)
}

func setupOn(tb testing.TB, js *streamtest.Server, tweak func(*intake.Config)) *env {
	tb.Helper()
	c := testCampaign(tb)
	e := &env{js: js, clock: newClock(at("2021-08-09 21:00:00")), reg: prometheus.NewRegistry(), c: c}
	cfg := intake.Config{
		JetStream: js.JS,
		Conn:      js.NC,
		Campaigns: staticCampaigns{c},
		Hasher:    keys.NewHasher(testHMAC),
		Sealer:    testSealer(tb),
		Registry:  e.reg,
		Now:       e.clock.Now,
		AddrRate:  -1,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	svc, err := intake.New(cfg)
	require.NoError(tb, err)
	require.NoError(tb, svc.Start(context.Background()))
	e.svc = svc
	std := httptest.NewServer(svc.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	fast := svc.FastServer(svc.Handler(), nil)
	go func() { _ = fast.Serve(ln) }()
	e.url, e.stdURL = "http://"+ln.Addr().String(), std.URL
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fast.ShutdownWithContext(ctx)
		std.Close()
		svc.Stop()
	})
	return e
}

// body is a valid intent in window d9 (born on the 19th); fields override.
func body(fields map[string]any) map[string]any {
	b := map[string]any{
		"campaign":       "test-2021",
		"provider":       "pass",
		"identity_token": "tok-abc.def",
		"birthdate":      "1990-08-19",
		"phone":          "010-1234-5678",
		"region":         "11680",
		"device_id":      "device-1",
	}
	for k, v := range fields {
		if v == nil {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	return b
}

// answer is a decoded response.
type answer struct {
	Status int
	Header http.Header
	Body   map[string]any
}

// post sends an intent; headers are name, value pairs.
func (e *env) post(tb testing.TB, b any, headers ...string) answer {
	tb.Helper()
	var raw []byte
	switch v := b.(type) {
	case []byte:
		raw = v
	case string:
		raw = []byte(v)
	default:
		var err error
		raw, err = json.Marshal(v)
		require.NoError(tb, err)
	}
	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/intents", bytes.NewReader(raw))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(tb, req)
}

func (e *env) get(tb testing.TB, path string, headers ...string) answer {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url+path, nil)
	require.NoError(tb, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(tb, req)
}

func do(tb testing.TB, req *http.Request) answer {
	tb.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer res.Body.Close()
	a := answer{Status: res.StatusCode, Header: res.Header}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		require.NoError(tb, json.NewDecoder(res.Body).Decode(&a.Body))
	}
	return a
}
