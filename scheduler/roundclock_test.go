package scheduler_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/scheduler"
)

// The clock service commits and freezes on its own as time passes, and the
// admin route serves the round file to auditors.
func TestRoundClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 1, 2, seoul(2))
	var now atomic.Int64
	setNow := func(at time.Time) { now.Store(at.UnixNano()) }
	setNow(d9Opens.Add(-time.Hour))
	alloc := scheduler.New(w.store, scheduler.Config{Now: func() time.Time { return time.Unix(0, now.Load()).UTC() }})
	clock := &scheduler.RoundClock{
		Allocator: alloc,
		Campaigns: func(context.Context) ([]string, error) { return []string{campaignID}, nil },
		Every:     10 * time.Millisecond,
	}
	require.NoError(t, clock.Start(ctx))
	t.Cleanup(clock.Stop)

	tokens, err := config.ParseAdminTokens("operator:operator-token-0123456789,auditor:auditor-token-0123456789")
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /admin/v1/lottery/{campaign}/{window}", httpapi.RequireRole(tokens, scheduler.RoundHandler(alloc, nil), config.RoleOperator, config.RoleAuditor))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	get := func(path, token string) (int, scheduler.RoundFile) {
		req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var f scheduler.RoundFile
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&f))
		}
		return resp.StatusCode, f
	}
	const auditor = "auditor-token-0123456789"

	time.Sleep(50 * time.Millisecond)
	_, err = w.store.Seed(ctx, campaignID, "d9")
	require.ErrorIs(t, err, scheduler.ErrNoSeed, "nothing is committed before the window opens")
	status, _ := get("/admin/v1/lottery/test-alloc/d9", auditor)
	require.Equal(t, http.StatusNotFound, status)

	setNow(d9Opens)
	require.Eventually(t, func() bool {
		_, err := w.store.Seed(ctx, campaignID, "d9")
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the seed is committed once the window opens")

	w.insert(t, crowd(30))
	setNow(d9Closes)
	require.Eventually(t, func() bool {
		_, err := w.store.Round(ctx, campaignID, "d9")
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the input is frozen once the window closes")

	_, err = alloc.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
	require.NoError(t, err)
	status, f := get("/admin/v1/lottery/test-alloc/d9", auditor)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, f.Input, 30)
	require.Len(t, f.Assignments, 20)
	require.NoError(t, scheduler.VerifyRound(&f))

	for path, want := range map[string]int{
		"/admin/v1/lottery/test-alloc/zz": http.StatusNotFound,
		"/admin/v1/lottery/nope/d9":       http.StatusNotFound,
	} {
		status, _ := get(path, auditor)
		require.Equal(t, want, status, path)
	}
	status, _ = get("/admin/v1/lottery/test-alloc/d9", "wrong-token-0123456789")
	require.Equal(t, http.StatusUnauthorized, status)
}
