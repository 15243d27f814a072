package app

import "context"

// DedupeOptions are the dedupe role's settings beyond the shared ones.
type DedupeOptions struct{}

// startDedupe wires the dedupe role. (Filled in by the dedupe stage.)
func (s *System) startDedupe(ctx context.Context) error { return nil }
