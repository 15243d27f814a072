package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/worker"
)

func TestBackoffIsCappedFullJitter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		attempt int
		ceil    time.Duration
	}{
		{"below one", 0, 100 * time.Millisecond},
		{"first", 1, 100 * time.Millisecond},
		{"third", 3, 400 * time.Millisecond},
		{"capped", 10, 2 * time.Second},
		{"no overflow", 1 << 40, 2 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			lo, hi := c.ceil, time.Duration(0)
			for range 2000 {
				d := worker.Backoff(c.attempt, 100*time.Millisecond, 2*time.Second)
				require.Positive(t, d)
				require.LessOrEqual(t, d, c.ceil)
				lo, hi = min(lo, d), max(hi, d)
			}
			// Full jitter: spread over the whole range, not bunched at the top.
			require.Less(t, lo, c.ceil/10)
			require.Greater(t, hi, c.ceil*9/10)
		})
	}
	require.Zero(t, worker.Backoff(3, time.Second, 0), "no cap, no wait")
}

// syncBuffer is a log sink the test reads while the worker writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

// TestHealthLogsOncePerStateChange: a thousand failed attempts in five
// minutes make one "down" line, one "still down" a minute, and one "back
// up", and the state says what the worker waits on meanwhile.
func TestHealthLogsOncePerStateChange(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	now := time.Date(2021, 8, 9, 20, 0, 0, 0, time.UTC)
	h := worker.NewHealth("dedupe", slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	require.Equal(t, worker.Starting, h.State().Status)
	h.Running()
	require.True(t, h.State().Ready())

	start := now
	for i := range 1000 {
		now = start.Add(time.Duration(i) * 300 * time.Millisecond)
		h.Down(worker.PostgreSQL, errors.New("failed to connect"))
	}
	st := h.State()
	require.Equal(t, worker.Waiting, st.Status)
	require.False(t, st.Ready())
	require.Equal(t, []worker.Outage{{Dependency: worker.PostgreSQL, Since: start, Failures: 1000}}, st.WaitingOn)
	require.Contains(t, st.String(), "dedupe: waiting on postgresql since 2021-08-09T20:00:00Z (1000 failures)")
	h.Up(worker.PostgreSQL)
	h.Up(worker.PostgreSQL) // no outage: nothing to say
	require.True(t, h.State().Ready())

	lines := buf.lines()
	require.Len(t, lines, 1+4+1, "down, still down at minutes 1 to 4, back up:\n%s", strings.Join(lines, "\n"))
	require.Contains(t, lines[0], "dependency down")
	for _, l := range lines[1:5] {
		require.Contains(t, l, "dependency still down")
	}
	require.Contains(t, lines[2], "failures=401")
	require.Contains(t, lines[5], "dependency back up")
	require.Contains(t, lines[5], "failures=1000")

	h.Stopped()
	require.Equal(t, worker.Stopped, h.State().Status)
	require.Equal(t, "dedupe: stopped", h.State().String())
}

// sqlError has the method pgx's server errors have.
type sqlError string

func (e sqlError) Error() string    { return "sql " + string(e) }
func (e sqlError) SQLState() string { return string(e) }

// retryable has the method pgx's errors before any byte was sent have.
type retryable bool

func (r retryable) Error() string     { return "before sending" }
func (r retryable) SafeToRetry() bool { return bool(r) }

func TestUnavailable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", fmt.Errorf("get campaign: failed to connect: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{"deadline", fmt.Errorf("acquire: %w", context.DeadlineExceeded), true},
		{"cut connection", fmt.Errorf("decide batch: %w", io.ErrUnexpectedEOF), true},
		{"admin shutdown", fmt.Errorf("decide batch: %w", sqlError("57P01")), true},
		{"too many connections", sqlError("53300"), true},
		{"deadlock", sqlError("40P01"), true},
		{"safe to retry", fmt.Errorf("x: %w", retryable(true)), true},
		{"not safe to retry", retryable(false), false},
		{"unique violation", sqlError("23505"), false},
		{"check violation", fmt.Errorf("decide batch: %w", sqlError("23514")), false},
		{"invalid text", sqlError("22P02"), false},
		{"campaign not found", errors.New("campaign not found"), false},
		{"cancelled by our own stop", context.Canceled, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, c.want, worker.Unavailable(c.err))
		})
	}
}
