package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
)

// intakeDouble answers like intake's front door, with intake's own decoder
// and validator and the campaign's windows, without the stream behind it:
// the load generator is what is under test. With shedFirst, every
// submission's first attempt is shed with 503 and Retry-After: 0.
func intakeDouble(tb testing.TB, c *campaign.Campaign, shedFirst bool) (*httptest.Server, func() int) {
	tb.Helper()
	var mu sync.Mutex
	seen := map[string]bool{}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		first := !seen[string(body)+r.Header.Get("Idempotency-Key")]
		seen[string(body)+r.Header.Get("Idempotency-Key")] = true
		count := n
		mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != IntentPath || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if shedFirst && first {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		req, err := intake.DecodeRequest(body)
		var v intake.Valid
		if err == nil {
			v, err = intake.Validate(req, c)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if _, ok := c.OpenWindow(v.Birth, testNow); !ok {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		receipt := fmt.Sprintf("r%d", count)
		if k := r.Header.Get("Idempotency-Key"); k != "" {
			receipt = "k" + req.DeviceID + k
		}
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"receipt": receipt, "status": "received"})
	}))
	tb.Cleanup(srv.Close)
	return srv, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestLoadClosedLoop(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 7, 600)
	srv, requests := intakeDouble(t, w.c, false)
	var progress int
	var mu sync.Mutex
	res, err := RunLoad(context.Background(), w.surge.Submissions, LoadConfig{
		Target: srv.URL, Connections: 8,
		Progress: func(done int) { mu.Lock(); progress = max(progress, done); mu.Unlock() },
	})
	require.NoError(t, err)
	require.Equal(t, len(w.surge.Submissions), res.Sent)
	require.Equal(t, res.Sent, res.Attempts, "nothing to retry")
	require.Equal(t, res.Attempts, requests())
	require.Equal(t, len(w.surge.Submissions), progress)
	require.Equal(t, w.surge.Truth().Expected().Status, res.ByStatus, "every answer as the truth expects")
	sc := w.surge.Truth().Score(res.Answers, nil)
	require.Equal(t, w.surge.Truth().Expected().Accepted, sc.Accepted, "retries got their original's receipt")
	for _, m := range sc.Mismatches {
		require.Equal(t, "accepted but never decided", m.Problem, "only the decisions are missing")
	}
	require.Positive(t, res.P50)
	require.GreaterOrEqual(t, res.P99, res.P50)
}

func TestLoadOpenLoopAndRetries(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 6, 100)
	srv, _ := intakeDouble(t, w.c, true)
	start := time.Now()
	res, err := RunLoad(context.Background(), w.surge.Submissions, LoadConfig{Target: srv.URL, Rate: 300})
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "100 at 300/s take 0.33 s")
	require.Equal(t, 100, res.Sent)
	// Every submission is shed once (a retry's body and key are its
	// original's, so some pass at once) and answered on a later try.
	require.Equal(t, w.surge.Truth().Expected().Status, res.ByStatus)
	require.Greater(t, res.Attempts, res.Sent)
}

func TestLoadBounds(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 6, 100)
	// A target that never answers: the run ends at its Duration.
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(stop) }) // runs first
	start := time.Now()
	res, err := RunLoad(context.Background(), w.surge.Submissions, LoadConfig{Target: hang.URL, Connections: 4, Duration: 300 * time.Millisecond})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, len(w.surge.Submissions), res.ByStatus[0], "nothing answered")

	for _, tc := range []struct {
		name, target string
		allow        bool
		err          bool
	}{
		{"loopback", "http://127.0.0.1:1", false, false},
		{"localhost", "http://localhost:1", false, false},
		{"remote", "http://192.0.2.1:8080", false, true},
		{"remote allowed", "http://192.0.2.1:8080", true, false},
		{"not a URL", "127.0.0.1:8080", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTarget(context.Background(), tc.target, tc.allow)
			require.Equal(t, tc.err, err != nil, "%v", err)
		})
	}
}

func TestWriteDump(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 6, 100)
	var buf bytes.Buffer
	require.NoError(t, WriteDump(&buf, w.surge.Submissions, "http://127.0.0.1:8080/"))
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	i := 0
	for sc.Scan() {
		var line DumpLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		s := w.surge.Submissions[i]
		require.Equal(t, "POST", line.Method)
		require.Equal(t, IntentPath, line.Path)
		require.Equal(t, "http://127.0.0.1:8080/v1/intents", line.URL)
		require.Equal(t, string(s.Body), line.Body, "line %d: the body byte for byte", i)
		require.Equal(t, "application/json", line.Headers["Content-Type"])
		require.Equal(t, s.IdempotencyKey, line.Headers["Idempotency-Key"])
		i++
	}
	require.NoError(t, sc.Err())
	require.Equal(t, len(w.surge.Submissions), i)
}

func TestWriteReceipts(t *testing.T) {
	t.Parallel()
	answers := []Answer{
		{Seq: 0, Status: http.StatusAccepted, Receipt: "r0"},
		{Seq: 1, Status: http.StatusTooManyRequests},
		{Seq: 2, Status: 0},
		{Seq: 3, Status: http.StatusAccepted, Receipt: "r3"},
		{Seq: 4, Status: http.StatusAccepted}, // a 202 whose body could not be read has no receipt to match
	}
	var buf bytes.Buffer
	n, err := WriteReceipts(&buf, answers)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	var got []ReceiptLine
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var l ReceiptLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		got = append(got, l)
	}
	require.Equal(t, []ReceiptLine{{Seq: 0, Receipt: "r0"}, {Seq: 3, Receipt: "r3"}}, got)
}
