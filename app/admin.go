package app

import "context"

// startAdmin wires the admin role. (Filled in by the admin stage.)
func (s *System) startAdmin(ctx context.Context) error { return nil }
