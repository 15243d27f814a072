package sim_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine outlives them: a simulated gateway, provider or load generator left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
