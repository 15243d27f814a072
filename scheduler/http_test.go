package scheduler_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/scheduler"
)

func TestAdminAllocations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 2, 1, seoul(10))
	w.insert(t, crowd(150))
	alloc := w.allocator(9, 20)
	w.commitSeed(t, alloc, "d9")

	admin := &scheduler.Admin{Allocator: alloc}
	require.NoError(t, admin.Start(ctx))
	t.Cleanup(admin.Stop)
	tokens, err := config.ParseAdminTokens("operator:operator-token-0123456789,auditor:auditor-token-0123456789")
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /admin/v1/allocations", httpapi.RequireRole(tokens, http.HandlerFunc(admin.ServeStart), config.RoleOperator))
	mux.Handle("GET /admin/v1/allocations/{id}", httpapi.RequireRole(tokens, http.HandlerFunc(admin.ServeStatus), config.RoleOperator, config.RoleAuditor))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	call := func(method, path, token, body string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	const operator, auditor = "operator-token-0123456789", "auditor-token-0123456789"

	for _, tc := range []struct {
		name, token, body string
		status            int
	}{
		{"no token", "", `{"campaign":"test-alloc","window":"d9"}`, http.StatusUnauthorized},
		{"auditor may not allocate", auditor, `{"campaign":"test-alloc","window":"d9"}`, http.StatusForbidden},
		{"not JSON", operator, `campaign=x`, http.StatusBadRequest},
		{"bad policy", operator, `{"campaign":"test-alloc","window":"d9","policy":"raffle"}`, http.StatusBadRequest},
		{"unknown window", operator, `{"campaign":"test-alloc","window":"zz"}`, http.StatusNotFound},
		{"no seed", operator, `{"campaign":"test-alloc","window":"d0"}`, http.StatusConflict},
	} {
		status, _ := call("POST", "/admin/v1/allocations", tc.token, tc.body)
		require.Equal(t, tc.status, status, tc.name)
	}

	status, started := call("POST", "/admin/v1/allocations", operator, `{"campaign":"test-alloc","window":"d9","dry_run":false}`)
	require.Equal(t, http.StatusAccepted, status)
	path := started["status_url"].(string)
	var run map[string]any
	require.Eventually(t, func() bool {
		status, run = call("GET", path, auditor, "")
		require.Equal(t, http.StatusOK, status)
		return run["state"] == "done"
	}, 20*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 150, run["total"])
	require.EqualValues(t, 150, run["done"])
	result := run["result"].(map[string]any)
	require.EqualValues(t, 100, result["assigned"])
	require.NotEmpty(t, result["seed"])
	w.checkInvariants(t)

	status, _ = call("GET", "/admin/v1/allocations/999999", operator, "")
	require.Equal(t, http.StatusNotFound, status)

	// While a run holds the campaign, another is refused with 409.
	job, err := alloc.Begin(ctx, scheduler.Request{Campaign: campaignID, Window: "d9", DryRun: true})
	require.NoError(t, err)
	status, _ = call("POST", "/admin/v1/allocations", operator, `{"campaign":"test-alloc","window":"d9","dry_run":true}`)
	require.Equal(t, http.StatusConflict, status)
	job.Abandon()
}
