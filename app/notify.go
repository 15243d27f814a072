package app

import "context"

// NotifyOptions are the notify role's settings beyond the shared ones.
type NotifyOptions struct{}

// startNotify wires the notify role. (Filled in by the notify stage.)
func (s *System) startNotify(ctx context.Context) error { return nil }
