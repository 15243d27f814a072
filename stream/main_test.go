package stream_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine outlives them: an embedded server or a connection left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
