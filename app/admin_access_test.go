package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

const (
	operatorToken = "operator-token-0123456789"
	auditorToken  = "auditor-token-0123456789"
)

// adminEnv is a process running the admin role on a fresh database and
// JetStream, served over HTTP.
type adminEnv struct {
	sys *app.System
	db  *pgtest.DB
	url string
}

func setupAdmin(tb testing.TB) *adminEnv {
	tb.Helper()
	db := pgtest.New(tb)
	js := streamtest.New(tb, stream.Config{})
	hmac, err := keys.ParseKeys("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", 32)
	require.NoError(tb, err)
	enc, err := keys.ParseKeys("e1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=", 32)
	require.NoError(tb, err)
	tokens, err := config.ParseAdminTokens("operator:" + operatorToken + ",auditor:" + auditorToken)
	require.NoError(tb, err)
	sys, err := app.New(app.Options{
		Roles: []app.Role{app.RoleAdmin}, Pool: db.Pool, NC: js.NC,
		Config: config.Config{HMACKeys: hmac, EncKeys: enc, AdminTokens: tokens},
	})
	require.NoError(tb, err)
	require.NoError(tb, sys.Start(context.Background()))
	tb.Cleanup(sys.Stop)
	srv := httptest.NewServer(sys.Handler())
	tb.Cleanup(srv.Close)
	return &adminEnv{sys: sys, db: db, url: srv.URL}
}

func (e *adminEnv) do(tb testing.TB, method, path, token, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	require.NoError(tb, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, b
}

// pathValue fills a route's path pattern with made-up values.
var pathValue = regexp.MustCompile(`\{[a-z_]+(\.\.\.)?\}`)

// Every admin route, enumerated from the one table the process mounts:
// without a token 401, with an unknown token 401, with a role it does not
// allow 403, an auditor refused every change, an operator let through.
// A route added to the table is covered here without a line changed.
func TestAdminAccess(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	routes := e.sys.AdminRoutes()

	// The contract's routes (docs/DESIGN.md, "HTTP (admin side)") are all
	// in the table: removing one fails here, not only in production.
	var patterns []string
	for _, rt := range routes {
		patterns = append(patterns, rt.Pattern)
	}
	for _, want := range []string{
		"POST /admin/v1/allocations", "GET /admin/v1/allocations/{id}", "GET /admin/v1/reports/dedupe",
		"GET /admin/v1/held", "POST /admin/v1/held/{submission}/release", "POST /admin/v1/held/{submission}/reject",
		"POST /admin/v1/outbox/resend", "GET /admin/v1/audit", "GET /admin/v1/receipts/{receipt}",
	} {
		require.Contains(t, patterns, want)
	}

	for _, rt := range routes {
		t.Run(rt.Pattern, func(t *testing.T) {
			t.Parallel()
			path := pathValue.ReplaceAllString(rt.Path(), "test-value")
			if rt.Method() == http.MethodGet && strings.Contains(path, "reports") {
				path += "?campaign=test-value"
			}
			body := ""
			if rt.Method() != http.MethodGet {
				body = "{}"
			}
			code, _ := e.do(t, rt.Method(), path, "", body)
			require.Equal(t, http.StatusUnauthorized, code, "no token")
			code, _ = e.do(t, rt.Method(), path, "not-a-configured-token-at-all", body)
			require.Equal(t, http.StatusUnauthorized, code, "unknown token")

			for _, role := range []config.Role{config.RoleOperator, config.RoleAuditor} {
				token := map[config.Role]string{config.RoleOperator: operatorToken, config.RoleAuditor: auditorToken}[role]
				allowed := slices.Contains(rt.Roles, role)
				if role == config.RoleAuditor && !rt.ReadOnly() {
					require.False(t, allowed, "auditors are read-only: %s lets them in", rt.Pattern)
				}
				code, _ = e.do(t, rt.Method(), path, token, body)
				if allowed {
					require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code, "%s may call it", role)
				} else {
					require.Equal(t, http.StatusForbidden, code, "%s may not call it", role)
				}
			}
			// The operator is allowed everywhere (docs/DESIGN.md).
			require.Contains(t, rt.Roles, config.RoleOperator)
		})
	}
}

// Every state-changing admin call is in the audit log before it acts,
// with the role, the token's id (never the token), the action, its
// target and its outcome; operators and auditors read the log.
func TestAdminActionsAreAudited(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)

	code, _ := e.do(t, "POST", "/admin/v1/held/r-unknown/release", operatorToken, "")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = e.do(t, "POST", "/admin/v1/allocations", operatorToken, `{"campaign":"c-none","window":"d9","dry_run":true}`)
	require.NotEqual(t, http.StatusForbidden, code)
	code, _ = e.do(t, "POST", "/admin/v1/held/r-auditor/reject", auditorToken, "")
	require.Equal(t, http.StatusForbidden, code)
	code, _ = e.do(t, "GET", "/admin/v1/held?campaign=c-none", operatorToken, "")
	require.Equal(t, http.StatusOK, code)

	code, b := e.do(t, "GET", "/admin/v1/audit", auditorToken, "")
	require.Equal(t, http.StatusOK, code)
	var got struct{ Entries []httpapi.AuditEntry }
	require.NoError(t, json.Unmarshal(b, &got))
	require.Len(t, got.Entries, 2, "the two operator actions; a refused call and a read are not actions")
	alloc, release := got.Entries[0], got.Entries[1]

	require.Equal(t, "held.release", release.Action)
	require.Equal(t, "submission=r-unknown", release.Target)
	require.Equal(t, "404", release.Outcome)
	require.Equal(t, "operator", release.Role)
	require.Regexp(t, `^[0-9a-f]{12}$`, release.TokenID)
	require.Equal(t, "allocation.start", alloc.Action)
	require.Equal(t, "campaign=c-none window=d9 dry_run=true", alloc.Target)
	require.Equal(t, release.TokenID, alloc.TokenID, "one token, one id")
	require.False(t, release.At.IsZero())
	require.NotContains(t, string(b), operatorToken)
	require.NotContains(t, string(b), auditorToken)

	code, b = e.do(t, "GET", "/admin/v1/audit?action=held.release&limit=5", operatorToken, "")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(b, &got))
	require.Len(t, got.Entries, 1)

	// The log is append-only: neither rewritten nor deleted.
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `UPDATE admin_audit SET action = 'nothing' WHERE id = $1`, release.ID)
	require.ErrorContains(t, err, "append-only")
	_, err = e.db.Pool.Exec(ctx, `DELETE FROM admin_audit`)
	require.ErrorContains(t, err, "append-only")
}
