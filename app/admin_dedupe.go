package app

import "context"

// mountDedupeAdmin mounts the dedupe stage's admin routes. (Filled in by the dedupe stage.)
func (s *System) mountDedupeAdmin(ctx context.Context) error { return nil }
