package app

import (
	"context"
	"net/http"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

// mountSchedulerAdmin mounts batch allocation on the admin API: an
// operator starts a run (it goes on in the background, under the
// campaign's allocation lock) and operators and auditors follow its
// progress and read its result. Stopping the system interrupts the runs in
// flight; the next run of the campaign resumes them.
func (s *System) mountSchedulerAdmin(ctx context.Context) error {
	log := s.log.With("role", string(RoleAdmin), "stage", "scheduler")
	a := &scheduler.Admin{
		Allocator: scheduler.New(&postgres.AllocationStore{Pool: s.pool}, scheduler.Config{Logger: log, Now: s.now}),
		Log:       log,
	}
	if err := s.run(ctx, a); err != nil {
		return err
	}
	tokens := s.opts.Config.AdminTokens
	s.admin.Handle("POST /admin/v1/allocations", httpapi.RequireRole(tokens, http.HandlerFunc(a.ServeStart), config.RoleOperator))
	s.admin.Handle("GET /admin/v1/allocations/{id}", httpapi.RequireRole(tokens, http.HandlerFunc(a.ServeStatus), config.RoleOperator, config.RoleAuditor))
	return nil
}
