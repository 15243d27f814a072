package app

import "context"

// IntakeOptions are the intake role's settings beyond the shared ones.
type IntakeOptions struct{}

// startIntake wires the intake role. (Filled in by the intake stage.)
func (s *System) startIntake(ctx context.Context) error { return nil }
