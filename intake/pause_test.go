package intake_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// memPauses is a pause store without a database: intake reads it on its
// refresh, as it reads postgres.PauseStore.
type memPauses struct {
	mu sync.Mutex
	m  map[string]intake.Pause
}

func (p *memPauses) Pauses(context.Context) (map[string]intake.Pause, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]intake.Pause{}
	for k, v := range p.m {
		out[k] = v
	}
	return out, nil
}

func (p *memPauses) set(ps ...intake.Pause) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m = map[string]intake.Pause{}
	for _, x := range ps {
		p.m[x.Campaign] = x
	}
}

// A paused campaign's submissions are answered 503 "paused" with the
// reopening time and a Retry-After until it, on both servers, once a
// refresh has read the pause; the pause ends by itself at its reopening
// time, and at once on a resume's refresh.
func TestPausedCampaignRefusesSubmissions(t *testing.T) {
	t.Parallel()
	store := &memPauses{}
	e := setup(t, func(c *intake.Config) { c.Pauses = store; c.DeviceRate = -1 })
	ctx := context.Background()
	require.Equal(t, http.StatusAccepted, e.post(t, body(nil)).Status, "not paused yet")

	now := e.clock.Now()
	reopens := now.Add(90 * time.Second).UTC()
	store.set(intake.Pause{Campaign: "test-2021", PausedAt: now, ReopensAt: &reopens, By: "operator:abc"})
	require.Equal(t, http.StatusAccepted, e.post(t, body(nil)).Status, "a pause counts from the next refresh")
	require.NoError(t, e.svc.Refresh(ctx))
	for _, base := range []string{e.url, e.stdURL} {
		a := (&env{url: base}).post(t, body(nil))
		require.Equal(t, http.StatusServiceUnavailable, a.Status, "%s: body %v", base, a.Body)
		require.Equal(t, "paused", a.Body["error"])
		require.Equal(t, reopens.Format(time.RFC3339), a.Body["reopens_at"])
		require.Equal(t, "90", a.Header.Get("Retry-After"))
	}

	e.clock.Set(reopens)
	require.Equal(t, http.StatusAccepted, e.post(t, body(nil)).Status, "the pause ended at its reopening time")

	store.set(intake.Pause{Campaign: "test-2021", PausedAt: e.clock.Now(), By: "operator:abc"})
	require.NoError(t, e.svc.Refresh(ctx))
	a := e.post(t, body(nil))
	require.Equal(t, http.StatusServiceUnavailable, a.Status)
	require.Nil(t, a.Body["reopens_at"], "until resumed: no reopening time")
	require.Equal(t, "60", a.Header.Get("Retry-After"))

	store.set()
	require.NoError(t, e.svc.Refresh(ctx))
	require.Equal(t, http.StatusAccepted, e.post(t, body(nil)).Status, "resumed")
}
