package app

import (
	"context"
	"net/http"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
)

// mountDedupeAdmin mounts the dedupe stage's admin routes: the auditor's
// report (auditor and operator) and the held-review workflow (operator).
// A review is recorded beside the held decision with who did it.
func (s *System) mountDedupeAdmin(ctx context.Context) error {
	a := &dedupe.Admin{
		Store: &postgres.DedupeStore{Pool: s.pool},
		Now:   s.now,
		Log:   s.log.With("role", string(RoleAdmin)),
		Reviewer: func(r *http.Request) string {
			return "admin:" + string(httpapi.RoleFrom(r.Context()))
		},
	}
	tokens := s.opts.Config.AdminTokens
	s.admin.Handle("GET /admin/v1/reports/dedupe", httpapi.RequireRole(tokens, http.HandlerFunc(a.ServeReport), config.RoleAuditor, config.RoleOperator))
	s.admin.Handle("GET /admin/v1/held", httpapi.RequireRole(tokens, http.HandlerFunc(a.ServeHeld), config.RoleOperator))
	s.admin.Handle("POST /admin/v1/held/{submission}/release", httpapi.RequireRole(tokens, http.HandlerFunc(a.ServeRelease), config.RoleOperator))
	s.admin.Handle("POST /admin/v1/held/{submission}/reject", httpapi.RequireRole(tokens, http.HandlerFunc(a.ServeReject), config.RoleOperator))
	return nil
}
