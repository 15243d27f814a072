package sim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/sim"
)

func newSMSGateway(tb testing.TB, cfg sim.GatewayConfig) (*sim.Gateway, string) {
	tb.Helper()
	g := sim.NewGateway(cfg)
	srv := httptest.NewServer(g.Handler())
	tb.Cleanup(func() { srv.Close(); g.Close() })
	return g, srv.URL
}

func postSMS(tb testing.TB, url, key, to string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/messages", strings.NewReader(fmt.Sprintf(`{"to":%q,"text":"[예방접종] 8/26(목) 09:00-12:00","type":"sms"}`, to)))
	require.NoError(tb, err)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The handset, not the gateway, is where a double send shows: with the
// gateway's idempotency switched off, a repeated send reaches the phone
// twice and the handsets count it.
func TestHandsetCatchesDoubleSend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		ignore        bool
		secondStatus  int
		wantReceived  int
		wantDuplicate int
	}{
		{"idempotency on: the repeat is answered from the record", false, http.StatusOK, 1, 0},
		{"idempotency off: the repeat reaches the phone", true, http.StatusAccepted, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, url := newSMSGateway(t, sim.GatewayConfig{IgnoreIdempotency: tc.ignore})
			status, _ := postSMS(t, url, "c:1:v1", "010-1234-5678")
			require.Equal(t, http.StatusAccepted, status)
			status, body := postSMS(t, url, "c:1:v1", "01012345678")
			require.Equal(t, tc.secondStatus, status)
			if !tc.ignore {
				require.Contains(t, body, `"duplicate":true`)
			}
			h := g.Handsets()
			require.Equal(t, tc.wantReceived, h.Received("+82 10-1234-5678"))
			require.Equal(t, tc.wantDuplicate, h.Duplicates())
			// A new version of the message (an operator's resend) is not a
			// duplicate.
			status, _ = postSMS(t, url, "c:1:v2", "010-1234-5678")
			require.Equal(t, http.StatusAccepted, status)
			require.Equal(t, tc.wantReceived+1, h.Received("010-1234-5678"))
			require.Equal(t, tc.wantDuplicate, h.Duplicates())
			st := g.Stats()
			require.Equal(t, 3, st.Attempts)
			require.Equal(t, tc.wantDuplicate, st.HandsetDuplicates)
		})
	}
}

func TestGatewayRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    sim.GatewayConfig
		key    string
		to     string
		status int
		code   string
	}{
		{"a landline", sim.GatewayConfig{}, "k", "02-555-1234", http.StatusBadRequest, "invalid_number"},
		{"no idempotency key", sim.GatewayConfig{}, "", "010-1234-5678", http.StatusBadRequest, "bad_request"},
		{"an outage", sim.GatewayConfig{Faults: sim.SMSFaults{Down: true}}, "k", "010-1234-5678", http.StatusServiceUnavailable, "unavailable"},
		{"always failing", sim.GatewayConfig{Faults: sim.SMSFaults{ErrorRate: 1}}, "k", "010-1234-5678", http.StatusInternalServerError, "internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, url := newSMSGateway(t, tc.cfg)
			status, body := postSMS(t, url, tc.key, tc.to)
			require.Equal(t, tc.status, status)
			require.Contains(t, body, tc.code)
			require.Zero(t, g.Handsets().Total())
			require.Equal(t, 1, g.Stats().Refused)
		})
	}
}

func TestGatewayCountsEUCKRBytes(t *testing.T) {
	t.Parallel()
	_, url := newSMSGateway(t, sim.GatewayConfig{})
	send := func(text, typ string) int {
		body := fmt.Sprintf(`{"to":"010-1234-5678","text":%q,"type":%q}`, text, typ)
		req, err := http.NewRequest(http.MethodPost, url+"/v1/messages", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", text+typ)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusAccepted, send(strings.Repeat("가", 45), "sms"), "90 bytes fit an SMS")
	require.Equal(t, http.StatusBadRequest, send(strings.Repeat("가", 45)+"a", "sms"), "91 bytes do not")
	require.Equal(t, http.StatusAccepted, send(strings.Repeat("가", 1000), "lms"), "2000 bytes fit an LMS")
	require.Equal(t, http.StatusBadRequest, send(strings.Repeat("가", 1000)+"a", "lms"), "2001 bytes do not")
}

func TestGatewayFaultsOverHTTP(t *testing.T) {
	t.Parallel()
	g, url := newSMSGateway(t, sim.GatewayConfig{})
	put := func(body string) int {
		req, err := http.NewRequest(http.MethodPut, url+"/v1/faults", strings.NewReader(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, put(`{"down":true,"latency":"1ms"}`))
	status, _ := postSMS(t, url, "k1", "010-1234-5678")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, http.StatusOK, put(`{}`))
	status, _ = postSMS(t, url, "k1", "010-1234-5678")
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, http.StatusBadRequest, put(`{"error_rate":2}`))
	require.Equal(t, 1, g.Handsets().Total())
}

func TestGatewayRateLimit(t *testing.T) {
	t.Parallel()
	g, url := newSMSGateway(t, sim.GatewayConfig{Rate: 1, Burst: 2})
	var statuses []int
	for i := range 4 {
		s, _ := postSMS(t, url, fmt.Sprintf("k%d", i), "010-1234-5678")
		statuses = append(statuses, s)
	}
	require.Equal(t, []int{202, 202, 429, 429}, statuses)
	require.Equal(t, 2, g.Handsets().Total())
}

func TestGatewayPostsSignedReports(t *testing.T) {
	t.Parallel()
	secret := []byte("report-secret")
	var mu sync.Mutex
	var got []notify.Report
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify(secret, body, r.Header.Get(notify.SignatureHeader), time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var rep notify.Report
		if err := json.Unmarshal(body, &rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, rep)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	g, url := newSMSGateway(t, sim.GatewayConfig{ReportURL: hook.URL, ReportSecret: secret})
	for i := range 3 {
		status, _ := postSMS(t, url, fmt.Sprintf("c:%d:v1", i), "010-1234-5678")
		require.Equal(t, http.StatusAccepted, status)
	}
	require.Eventually(t, func() bool { return g.Stats().ReportsSent == 3 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 3)
	for _, r := range got {
		require.Equal(t, notify.ReportDelivered, r.Status)
		require.NotEmpty(t, r.MessageID)
		require.True(t, strings.HasPrefix(r.Key, "c:"))
	}
	require.Zero(t, g.Stats().ReportsLost)
}

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		want  string
		valid bool
	}{
		{"010-1234-5678", "01012345678", true},
		{"+82 10-1234-5678", "01012345678", true},
		{"+821012345678", "01012345678", true},
		{"011-234-5678", "0112345678", true},
		{"02-555-1234", "025551234", false},
		{"010-12", "01012", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, sim.NormalizePhone(tc.in))
			require.Equal(t, tc.valid, sim.ValidMobile(tc.in))
		})
	}
}
