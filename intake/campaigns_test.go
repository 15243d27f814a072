package intake_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
)

// failingCampaigns lists its campaigns until told to fail.
type failingCampaigns struct {
	staticCampaigns
	fail atomic.Bool
}

func (f *failingCampaigns) List(ctx context.Context) ([]*campaign.Campaign, time.Time, error) {
	if f.fail.Load() {
		return nil, time.Time{}, errors.New("database unreachable")
	}
	return f.staticCampaigns.List(ctx)
}

// TestCampaignsStaleBound holds intake's catalog to campaign.Cache's rule:
// the last good campaigns are served through failing refreshes up to
// campaign.DefaultCacheMaxStale, then answered as unavailable (503 with
// Retry-After, never a 404 or a 500) until a refresh succeeds again.
func TestCampaignsStaleBound(t *testing.T) {
	t.Parallel()
	src := &failingCampaigns{}
	e := setup(t, func(cfg *intake.Config) {
		src.staticCampaigns = cfg.Campaigns.(staticCampaigns)
		cfg.Campaigns = src
		cfg.Refresh = time.Hour // refreshes come from the test only
	})
	ctx := context.Background()
	start := e.clock.Now()
	path := "/v1/campaigns/" + e.c.ID

	src.fail.Store(true)
	e.clock.Set(start.Add(campaign.DefaultCacheMaxStale - time.Second))
	require.Error(t, e.svc.Refresh(ctx))
	require.Equal(t, http.StatusOK, e.get(t, path).Status, "within the bound the last good campaigns are served")

	e.clock.Set(start.Add(campaign.DefaultCacheMaxStale))
	require.Error(t, e.svc.Refresh(ctx))
	for _, a := range []answer{e.get(t, path), e.post(t, body(nil)), e.get(t, "/v1/campaigns/no-such")} {
		require.Equal(t, http.StatusServiceUnavailable, a.Status, "past the bound every campaign is unavailable")
		require.NotEmpty(t, a.Header.Get("Retry-After"))
		require.Equal(t, "overloaded", a.Body["error"])
	}

	src.fail.Store(false)
	require.NoError(t, e.svc.Refresh(ctx))
	require.Equal(t, http.StatusOK, e.get(t, path).Status, "a good refresh serves the campaigns again")
	require.Equal(t, http.StatusNotFound, e.get(t, "/v1/campaigns/no-such").Status)
}
