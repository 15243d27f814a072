package app

import "context"

// mountSchedulerAdmin mounts the scheduler stage's admin routes. (Filled in by the scheduler stage.)
func (s *System) mountSchedulerAdmin(ctx context.Context) error { return nil }
