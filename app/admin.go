package app

import "context"

// startAdmin mounts the admin API of each stage on s.admin. Each stage's
// routes are wired in its own file (admin_<stage>.go); every route is
// wrapped in httpapi.RequireRole with the roles of docs/DESIGN.md, "HTTP".
func (s *System) startAdmin(ctx context.Context) error {
	for _, mount := range []func(context.Context) error{s.mountDedupeAdmin, s.mountSchedulerAdmin, s.mountLotteryAdmin, s.mountNotifyAdmin} {
		if err := mount(ctx); err != nil {
			return err
		}
	}
	return nil
}
