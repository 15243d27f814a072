package app

import (
	"context"
	"net/http"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
)

// dedupeAdminRoutes are the dedupe stage's admin routes: the auditor's
// report and the held decisions' list (auditor and operator), and the
// held-review workflow (operator), one by one or in bulk.
// A review is recorded beside the held decision with who did it.
func (s *System) dedupeAdminRoutes(ctx context.Context) ([]httpapi.AdminRoute, error) {
	a := &dedupe.Admin{
		Store: &postgres.DedupeStore{Pool: s.pool},
		Now:   s.now,
		Log:   s.log.With("role", string(RoleAdmin)),
		Reviewer: func(r *http.Request) string {
			return "admin:" + string(httpapi.RoleFrom(r.Context()))
		},
	}
	operator, anyone := []config.Role{config.RoleOperator}, []config.Role{config.RoleAuditor, config.RoleOperator}
	return []httpapi.AdminRoute{
		{Pattern: "GET /admin/v1/reports/dedupe", Roles: anyone, Handler: http.HandlerFunc(a.ServeReport)},
		{Pattern: "GET /admin/v1/held", Roles: anyone, Handler: http.HandlerFunc(a.ServeHeld)},
		{Pattern: "POST /admin/v1/held/{submission}/release", Action: "held.release", Roles: operator, Handler: http.HandlerFunc(a.ServeRelease)},
		{Pattern: "POST /admin/v1/held/{submission}/reject", Action: "held.reject", Roles: operator, Handler: http.HandlerFunc(a.ServeReject)},
		{Pattern: "POST /admin/v1/held/review", Action: "held.review_bulk", Roles: operator, Handler: http.HandlerFunc(a.ServeBulkReview)},
	}, nil
}
