package world_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/world"
)

func TestMain(m *testing.M) { pgtest.VerifyMain(m, pgtest.IgnoreFastHTTP()...) }

// A lottery seed committed before the window closes is published on the
// campaign endpoint (its hash only), so that nobody can try seeds later.
func TestCampaignEndpointPublishesLotteryCommitment(t *testing.T) {
	t.Parallel()
	srv := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := config.FromEnv(func(string) string { return "" }, false)
	require.NoError(t, err)
	w, err := world.Start(ctx, world.Options{Config: cfg, DatabaseURL: srv.URL, Clinics: 20, Seed: 3})
	require.NoError(t, err)
	defer w.Close()

	window := w.Campaign.Windows[0].ID
	cm, err := scheduler.New(&postgres.AllocationStore{Pool: w.Pool}, scheduler.Config{}).CommitSeed(ctx, w.Campaign.ID, window)
	require.NoError(t, err)

	type view struct {
		Windows []struct {
			ID      string `json:"id"`
			Lottery *struct {
				SeedHash string `json:"seed_hash"`
				Seed     string `json:"seed"`
			} `json:"lottery"`
		} `json:"windows"`
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(w.BaseURL + "/v1/campaigns/" + w.Campaign.ID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var v view
		if json.NewDecoder(resp.Body).Decode(&v) != nil || len(v.Windows) == 0 || v.Windows[0].Lottery == nil {
			return false
		}
		require.Equal(t, window, v.Windows[0].ID)
		require.Equal(t, cm.Hash, v.Windows[0].Lottery.SeedHash)
		require.Empty(t, v.Windows[0].Lottery.Seed, "the seed stays secret until an allocation reveals it")
		return true
	}, 30*time.Second, 250*time.Millisecond)
}
