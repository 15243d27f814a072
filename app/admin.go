package app

import (
	"context"
	"net/http"
	"strconv"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
)

// purposeAdminToken separates the audit log's token ids from every other
// keyed hash made with the same key.
const purposeAdminToken = "admin-token"

// tokenIDLen is how many hex digits of the keyed hash name a token in the
// audit log: enough to tell a deployment's tokens apart, too few to be
// worth anything without the key.
const tokenIDLen = 12

// startAdmin mounts the admin API of each stage on s.admin. Each stage's
// routes are declared in its own file (admin_<stage>.go) as one table of
// httpapi.AdminRoute with the roles of docs/DESIGN.md, "HTTP"; Mount puts
// every one behind the token check and, when it changes state, the audit
// log, so no route can be added without both.
func (s *System) startAdmin(ctx context.Context) error {
	audit := &postgres.AuditStore{Pool: s.pool}
	s.adminAPI = &httpapi.Admin{
		Tokens: s.opts.Config.AdminTokens,
		TokenID: func(token string) string {
			return s.hasher.Sum(purposeAdminToken, token)[:tokenIDLen]
		},
		Audit: audit,
		Log:   s.log.With("role", string(RoleAdmin)),
		Now:   s.now,
	}
	for _, routes := range []func(context.Context) ([]httpapi.AdminRoute, error){s.dedupeAdminRoutes, s.receiptAdminRoutes, s.schedulerAdminRoutes, s.lotteryAdminRoutes, s.notifyAdminRoutes, s.deadLetterAdminRoutes, s.consoleAdminRoutes} {
		rs, err := routes(ctx)
		if err != nil {
			return err
		}
		s.adminAPI.Mount(s.admin, rs...)
	}
	s.adminAPI.Mount(s.admin, httpapi.AdminRoute{
		Pattern: "GET /admin/v1/audit", Roles: []config.Role{config.RoleOperator, config.RoleAuditor},
		Handler: serveAudit(audit),
	})
	return nil
}

// AdminRoutes lists every route of the admin API this process serves,
// bearer-token routes only (the gateway's signed webhook is not one).
func (s *System) AdminRoutes() []httpapi.AdminRoute {
	if s.adminAPI == nil {
		return nil
	}
	return s.adminAPI.Routes()
}

// serveAudit answers GET /admin/v1/audit?limit=&before=&action=: the
// audit log of admin actions, newest first; before pages on with the
// last id seen.
func serveAudit(store *postgres.AuditStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, before := 100, int64(0)
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"limit": "want 1 to 1000"}})
				return
			}
			limit = n
		}
		if v := q.Get("before"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"before": "want an entry id"}})
				return
			}
			before = n
		}
		entries, err := store.List(r.Context(), limit, before, q.Get("action"))
		if err != nil {
			httpapi.Fail(w, err, nil)
			return
		}
		if entries == nil {
			entries = []httpapi.AuditEntry{}
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"entries": entries})
	})
}
