package app_test

import (
	"testing"

	"github.com/prereg/prereg/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.VerifyMain(m) }
