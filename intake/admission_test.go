package intake

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	rtmetrics "runtime/metrics"
	"slices"
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
	g := &cpuGuard{target: 10 * time.Millisecond, minActive: 4}
	require.False(t, g.refuses(), "no lag, no shedding")
	g.permille.Store(1000)
	g.active.Store(3)
	require.False(t, g.refuses(), "a lag with few requests in hand is someone else's")
	g.active.Store(4)
	require.True(t, g.refuses())
	g.permille.Store(500)
	refused := 0
	for range 2000 {
		if g.refuses() {
			refused++
		}
	}
	require.InDelta(t, 1000, refused, 150, "half the submissions at 500‰")
}

func TestCPUGuardFollowsTheSchedulingWait(t *testing.T) {
	t.Parallel()
	g := &cpuGuard{target: 10 * time.Millisecond, minActive: 1}
	g.observe(40 * time.Millisecond)
	require.Positive(t, g.permille.Load(), "a wait over the target starts shedding")
	for range 100 {
		g.observe(40 * time.Millisecond)
	}
	require.Equal(t, int64(980), g.permille.Load(), "never refuses everything")
	g.observe(7 * time.Millisecond)
	require.Equal(t, int64(980), g.permille.Load(), "between half the target and the target: hold")
	for range 200 {
		g.observe(time.Millisecond)
	}
	require.Zero(t, g.permille.Load(), "back under half the target: stops shedding")
}

func TestIntervalQuantileOfCumulativeHistogram(t *testing.T) {
	t.Parallel()
	h := &rtmetrics.Float64Histogram{
		Buckets: []float64{0, 0.001, 0.01, 0.1, math.Inf(1)},
		Counts:  []uint64{100, 50, 5, 0},
	}
	_, ok := intervalQuantile(nil, h, 0.9)
	require.False(t, ok, "no earlier reading")
	prev := slices.Clone(h.Counts)
	_, ok = intervalQuantile(prev, h, 0.9)
	require.False(t, ok, "nothing recorded in the interval")
	h.Counts = []uint64{110, 50, 95, 0} // this interval: 10 under 1ms, 90 in 10–100ms
	q, ok := intervalQuantile(prev, h, 0.9)
	require.True(t, ok)
	require.Equal(t, 100*time.Millisecond, q, "the earlier 100 fast waits do not hide the slow ones")
	h.Counts = []uint64{110, 50, 95, 7}
	q, _ = intervalQuantile([]uint64{110, 50, 95, 0}, h, 0.5)
	require.Equal(t, 100*time.Millisecond, q, "the open last bucket counts as its lower bound")
}

func TestCPUGuardReadsTheRuntime(t *testing.T) {
	t.Parallel()
	sample := []rtmetrics.Sample{{Name: schedLatency}}
	rtmetrics.Read(sample)
	require.Equal(t, rtmetrics.KindFloat64Histogram, sample[0].Value.Kind(), "the runtime measures scheduling waits")
}

// The hand-written 202 is the JSON the struct would have been.
func TestAcceptedBodyIsJSON(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	writeAccepted(rec, "AbC-_123")
	require.Equal(t, http.StatusAccepted, rec.Code)
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	var got map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, map[string]string{"receipt": "AbC-_123", "status": "received", "status_url": "/v1/intents/AbC-_123"}, got)
}
