package postgres_test

import (
	"testing"

	"github.com/prereg/prereg/postgres/pgtest"
)

// TestMain is the one TestMain of package postgres's tests (every store's
// tests share it): it stops a private cluster that pgtest started, and
// fails the tests if a pool or listener outlives them.
func TestMain(m *testing.M) { pgtest.VerifyMain(m) }
