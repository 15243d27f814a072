package app

import "context"

// VerifyOptions are the verify role's settings beyond the shared ones.
type VerifyOptions struct{}

// startVerify wires the verify role. (Filled in by the verify stage.)
func (s *System) startVerify(ctx context.Context) error { return nil }
