package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// idpServer serves a provider on loopback and returns a valid token.
func idpServer(tb testing.TB) (*IdP, *httptest.Server, string) {
	tb.Helper()
	p := NewIdP("pass", []byte("s"), []byte("ci"))
	srv := httptest.NewServer(p.Handler())
	tb.Cleanup(srv.Close)
	tok := p.Issue(TokenClaims{Person: "p1", Birthdate: "1990-08-19", Phone: "+821012345678", Device: "d"})
	return p, srv, tok
}

func postVerify(tb testing.TB, c *http.Client, url, token string) (int, []byte, error) {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	resp, err := c.Post(url+"/v1/verify", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestIdPFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults Faults
		status int
	}{
		{"healthy", Faults{}, 200},
		{"down", Faults{Down: true}, 503},
		{"errors", Faults{ErrorRate: 1}, 503},
		{"refusals", Faults{ErrorRate: 1, ErrorStatus: 400}, 400},
		{"inside a scheduled outage", Faults{Outages: []Outage{{From: 0, To: Duration(time.Hour)}}}, 503},
		{"before a scheduled outage", Faults{Outages: []Outage{{From: Duration(time.Hour), To: Duration(2 * time.Hour)}}}, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, srv, tok := idpServer(t)
			require.NoError(t, p.SetFaults(c.faults))
			status, _, err := postVerify(t, srv.Client(), srv.URL, tok)
			require.NoError(t, err)
			require.Equal(t, c.status, status)
		})
	}
}

func TestIdPOutageSchedule(t *testing.T) {
	t.Parallel()
	now := time.Date(2021, 8, 9, 0, 0, 0, 0, time.UTC)
	p, srv, tok := idpServer(t)
	var elapsed atomic.Int64
	p.Now = func() time.Time { return now.Add(time.Duration(elapsed.Load())) }
	o, err := ParseOutage("10s-40s")
	require.NoError(t, err)
	require.NoError(t, p.SetFaults(Faults{Outages: []Outage{o}}))
	for _, c := range []struct {
		at     time.Duration
		status int
	}{{5 * time.Second, 200}, {10 * time.Second, 503}, {39 * time.Second, 503}, {40 * time.Second, 200}} {
		elapsed.Store(int64(c.at))
		status, _, err := postVerify(t, srv.Client(), srv.URL, tok)
		require.NoError(t, err)
		require.Equal(t, c.status, status, "at t=%s", c.at)
	}
}

func TestIdPFaultsEndpoint(t *testing.T) {
	t.Parallel()
	p, srv, tok := idpServer(t)
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/faults", strings.NewReader(`{"down":true,"latency":"5ms"}`))
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.True(t, p.Faults().Down)
	require.Equal(t, Duration(5*time.Millisecond), p.Faults().Latency)
	status, _, err := postVerify(t, srv.Client(), srv.URL, tok)
	require.NoError(t, err)
	require.Equal(t, 503, status)

	for _, bad := range []string{`{"error_rate":2}`, `{"outages":[{"from":"40s","to":"10s"}]}`, `{"nonsense":1}`} {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/faults", strings.NewReader(bad))
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 400, resp.StatusCode, bad)
	}
	require.True(t, p.Faults().Down, "a rejected change leaves the faults as they were")
	require.EqualValues(t, 1, p.Stats().Failed)
}

func TestIdPTimeoutAndDrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults Faults
	}{
		{"never answers", Faults{TimeoutRate: 1}},
		{"slow-drip body", Faults{DripRate: 1, DripEvery: Duration(50 * time.Millisecond)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, srv, tok := idpServer(t)
			require.NoError(t, p.SetFaults(c.faults))
			client := srv.Client()
			client.Timeout = 300 * time.Millisecond // the whole exchange, body included
			start := time.Now()
			_, _, err := postVerify(t, client, srv.URL, tok)
			require.Error(t, err)
			require.Less(t, time.Since(start), 2*time.Second)
		})
	}
	t.Run("a patient client gets the dripped body", func(t *testing.T) {
		t.Parallel()
		p, srv, tok := idpServer(t)
		require.NoError(t, p.SetFaults(Faults{DripRate: 1, DripEvery: Duration(time.Millisecond)}))
		status, body, err := postVerify(t, srv.Client(), srv.URL, tok)
		require.NoError(t, err)
		require.Equal(t, 200, status)
		var r VerifyResponse
		require.NoError(t, json.Unmarshal(body, &r))
		require.Equal(t, "1990-08-19", r.Birthdate)
	})
}

func TestFaultsLatencyDistribution(t *testing.T) {
	t.Parallel()
	f := Faults{Latency: Duration(50 * time.Millisecond), LatencyP99: Duration(200 * time.Millisecond)}
	const n = 20000
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = f.delay()
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	med, p99 := ds[n/2], ds[n*99/100]
	require.InDelta(t, 50*time.Millisecond, med, float64(5*time.Millisecond), "median")
	require.InDelta(t, 200*time.Millisecond, p99, float64(30*time.Millisecond), "99th percentile")
	require.Equal(t, 50*time.Millisecond, Faults{Latency: Duration(50 * time.Millisecond)}.delay(), "fixed without a p99")
}
