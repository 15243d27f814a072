package app

import (
	"context"
	"net/http"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

// schedulerAdminRoutes put batch allocation on the admin API: an operator
// starts a run (it goes on in the background, under the campaign's
// allocation lock) and operators and auditors follow its progress and
// read its result. Stopping the system interrupts the runs in flight; the
// next run of the campaign resumes them. The audit log records a run and
// a dry run alike (its target says dry_run=true).
func (s *System) schedulerAdminRoutes(ctx context.Context) ([]httpapi.AdminRoute, error) {
	log := s.log.With("role", string(RoleAdmin), "stage", "scheduler")
	a := &scheduler.Admin{
		Allocator: scheduler.New(&postgres.AllocationStore{Pool: s.pool}, scheduler.Config{Logger: log, Now: s.now}),
		Log:       log,
	}
	if err := s.run(ctx, a); err != nil {
		return nil, err
	}
	return []httpapi.AdminRoute{
		{Pattern: "POST /admin/v1/allocations", Action: "allocation.start", Roles: []config.Role{config.RoleOperator}, Handler: http.HandlerFunc(a.ServeStart)},
		{Pattern: "GET /admin/v1/allocations/{id}", Roles: []config.Role{config.RoleOperator, config.RoleAuditor}, Handler: http.HandlerFunc(a.ServeStatus)},
	}, nil
}
