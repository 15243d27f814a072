package intake

import (
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
