package postgres_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres"
)

// A database that cannot be reached is named in the error without its
// credentials, wherever DATABASE_URL put them.
func TestOpenErrorRedactsCredentials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = postgres.Open(context.Background(), "postgres://prereg-user:db-password@"+addr+"/prereg?sslmode=disable&sslpassword=key-password")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "db-password")
	require.NotContains(t, err.Error(), "key-password")
}
