package intake

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAdmissionBoundsAndSlowAcks(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_600_000_000, 0)
	a := &admission{max: 8, slow: 50 * time.Millisecond}
	for i := range 8 {
		_, ok := a.acquire(now)
		require.True(t, ok, "publish %d within the bound", i)
	}
	reason, ok := a.acquire(now)
	require.False(t, ok)
	require.Equal(t, shedInFlight, reason)
	reason, refused := a.refuses(now)
	require.True(t, refused, "the body is not even read at the bound")
	require.Equal(t, shedInFlight, reason)

	// Acks at four times the target: the bound drops to a quarter.
	for range 8 {
		a.release(200 * time.Millisecond)
	}
	for range 64 {
		_, ok := a.acquire(now)
		require.True(t, ok)
		a.release(200 * time.Millisecond)
	}
	limit, reason := a.limit()
	require.Equal(t, shedSlowAcks, reason)
	require.InDelta(t, 2, limit, 1, "8 × 50ms / ~200ms")
	// Fast acks again: the bound comes back.
	for range 64 {
		_, ok := a.acquire(now)
		require.True(t, ok)
		a.release(time.Millisecond)
	}
	limit, reason = a.limit()
	require.Equal(t, int64(8), limit)
	require.Equal(t, shedInFlight, reason)

	// A full stream refuses everything until the back-off has passed.
	a.storageFullUntil.Store(now.Add(time.Second).UnixNano())
	reason, ok = a.acquire(now)
	require.False(t, ok)
	require.Equal(t, shedStorageFull, reason)
	_, ok = a.acquire(now.Add(2 * time.Second))
	require.True(t, ok)
	a.release(time.Millisecond)

	a.close()
	reason, ok = a.acquire(now.Add(2 * time.Second))
	require.False(t, ok, "nothing is admitted once closing")
	require.Equal(t, shedDraining, reason)
	require.Zero(t, a.inFlight.Load())
}

func TestCPUGuardShedsOnlyUnderPressure(t *testing.T) {
	t.Parallel()
	g := newCPUGuard(10 * time.Millisecond)
	require.False(t, g.refuses(), "no wait, no shedding")
	g.permille.Store(500)
	refused := 0
	for range 2000 {
		if g.refuses() {
			refused++
		}
	}
	require.InDelta(t, 1000, refused, 150, "half the submissions at 500‰")
	require.Equal(t, int64(2001), g.seen.Load(), "every submission is counted")
	require.Equal(t, int64(2001-refused), g.admitted.Load(), "and every one admitted")

	g = newCPUGuard(10 * time.Millisecond)
	for range 8 {
		g.interval(40*time.Millisecond, 4, 4, guardInterval) // 16 over the window: under minSeen
	}
	require.Zero(t, g.permille.Load(), "a wait with a trickle of submissions is someone else's")
}

func TestCPUGuardFollowsTheStandingWait(t *testing.T) {
	t.Parallel()
	g := newCPUGuard(10 * time.Millisecond)
	// 100 submissions every 5 ms: 20,000/s, all admitted until it refuses.
	step := func(wait time.Duration) {
		admitted := int64(100 - g.permille.Load()/10)
		g.interval(wait, 100, admitted, guardInterval)
	}
	for range 3 {
		step(time.Millisecond)
	}
	step(200 * time.Millisecond)
	require.Zero(t, g.permille.Load(), "one long wait in the window (a burst, a GC pause) is not load")
	require.Zero(t, g.permille.Load(), "a wait under the target does not start the guard")
	for range 3 {
		step(12 * time.Millisecond)
	}
	first := g.permille.Load()
	require.Positive(t, first, "a wait over the target through the whole window starts refusing")
	step(12 * time.Millisecond)
	require.Greater(t, g.permille.Load(), first, "and refuses more while the wait stays over the set point")
	for range 300 {
		step(100 * time.Millisecond)
	}
	require.Equal(t, int64(guardMaxPermille), g.permille.Load(), "never refuses everything")
	for range 20 {
		step(2 * time.Millisecond) // the anti-windup floor: the rate climbs back at once
	}
	require.Less(t, g.permille.Load(), int64(guardMaxPermille))
	for range 4 {
		step(5 * time.Millisecond) // the window forgets the shorter waits
	}
	held := g.permille.Load()
	for range 4 {
		step(5 * time.Millisecond)
	}
	require.Equal(t, held, g.permille.Load(), "at the set point, half the target: hold")
	step(time.Millisecond)
	require.Less(t, g.permille.Load(), held, "under it: the admitted rate grows")
	for range 400 {
		step(time.Millisecond)
	}
	require.Zero(t, g.permille.Load(), "and, once it no longer binds, the guard stops refusing")
}

func TestWakeProbe(t *testing.T) {
	t.Parallel()
	p, err := newWakeProbe()
	require.NoError(t, err)
	wait, read := p.take()
	require.Zero(t, wait, "nothing sent, nothing waited")
	require.False(t, read)
	p.send()
	require.Eventually(t, func() bool { return p.sentAt.Load() == 0 }, 5*time.Second, time.Millisecond, "the byte is read")
	wait, read = p.take()
	require.True(t, read)
	require.Positive(t, wait)
	require.Less(t, wait, 5*time.Second)
	wait, _ = p.take()
	require.Zero(t, wait, "a wait is reported once")
	p.close()

	// A byte not read yet counts for as long as it has waited.
	stuck := &wakeProbe{}
	stuck.waited.Store(-1)
	stuck.sentAt.Store(time.Now().Add(-30 * time.Millisecond).UnixNano())
	wait, read = stuck.take()
	require.False(t, read, "not read yet")
	require.GreaterOrEqual(t, wait, 30*time.Millisecond)
}

// TestCPUGuardShedsWhenTheProcessIsBusy runs itself again in a process
// with one P whose goroutines never let the runtime go idle: the probe's
// byte waits for the network poll, and the guard starts shedding.
func TestCPUGuardShedsWhenTheProcessIsBusy(t *testing.T) {
	t.Parallel()
	if os.Getenv("PREREG_TEST_BUSY_GUARD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCPUGuardShedsWhenTheProcessIsBusy$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PREREG_TEST_BUSY_GUARD=1", "GOMAXPROCS=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return
	}
	g := newCPUGuard(time.Millisecond)
	g.minSeen = 1 // tested above; here, only the wait matters
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go g.run(ctx, slog.Default(), done)
	defer func() { cancel(); <-done }()
	// Submissions keep arriving on goroutines that each work a little and
	// yield to the next: the run queue never empties, so the runtime polls
	// the network only every 10 ms (sysmon), as under overload.
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for range 64 {
		wg.Go(func() {
			for !stop.Load() {
				g.refuses()
				for range 2_000 {
					runtime.KeepAlive(g)
				}
				runtime.Gosched()
			}
		})
	}
	require.Eventually(t, func() bool { return g.permille.Load() > 0 }, 20*time.Second, 10*time.Millisecond,
		"a runtime too busy to poll the network sheds")
}

// The hand-written 202 is the JSON the struct would have been.
func TestAcceptedBodyIsJSON(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	writeAccepted(rec, "AbC-_123", []byte(`,"next":{"round_at":"2021-08-10T19:00:00+09:00"}`))
	require.Equal(t, http.StatusAccepted, rec.Code)
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	var got map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, map[string]any{"receipt": "AbC-_123", "status": "received", "status_url": "/v1/intents/AbC-_123",
		"next": map[string]any{"round_at": "2021-08-10T19:00:00+09:00"}}, got)
	rec = httptest.NewRecorder()
	writeAccepted(rec, "AbC-_123", nil)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got), "without a next: %s", rec.Body)
}
