package app

import (
	"context"
	"fmt"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

// lotteryAdminRoutes start the lottery rounds' clock and serves the rounds'
// public files to auditors.
//
// The clock runs in the admin role: it is the role that already does the
// scheduler's background work against the database, with a handful of
// replicas at most, while intake keeps the database off its submit path
// and the workers are sized for the surge. Each replica runs it; the
// database keeps the first commitment and the first freeze of a window,
// so a replica more costs one cheap read per window and tick. Its first
// pass is at start, so a campaign loaded with a window already open gets
// its seed then; every later load within DefaultRoundEvery.
func (s *System) lotteryAdminRoutes(ctx context.Context) ([]httpapi.AdminRoute, error) {
	log := s.log.With("role", string(RoleAdmin), "stage", "scheduler")
	store := &postgres.AllocationStore{Pool: s.pool}
	alloc := scheduler.New(store, scheduler.Config{Logger: log, Now: s.now})
	campaigns := &postgres.CampaignStore{Pool: s.pool}
	clock := &scheduler.RoundClock{
		Allocator: alloc,
		Log:       log,
		Campaigns: func(ctx context.Context) ([]string, error) {
			list, _, err := campaigns.List(ctx)
			if err != nil {
				return nil, fmt.Errorf("list campaigns: %w", err)
			}
			ids := make([]string, len(list))
			for i, c := range list {
				ids[i] = c.ID
			}
			return ids, nil
		},
	}
	if err := s.run(ctx, clock); err != nil {
		return nil, err
	}
	return []httpapi.AdminRoute{
		{Pattern: "GET /admin/v1/lottery/{campaign}/{window}", Roles: []config.Role{config.RoleOperator, config.RoleAuditor}, Handler: scheduler.RoundHandler(alloc, log)},
	}, nil
}
