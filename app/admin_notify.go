package app

import "context"

// mountNotifyAdmin mounts the notify stage's admin routes. (Filled in by the notify stage.)
func (s *System) mountNotifyAdmin(ctx context.Context) error { return nil }
