package stream_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/stream"
)

// A failed connect names the server but never its credentials: the error
// reaches logs and the terminal.
func TestConnectErrorRedactsCredentials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // a port nothing listens on
	for _, url := range []string{
		"nats://prereg:nats-password@" + addr,
		"nats://s3cr3t-token@" + addr,
	} {
		_, err := stream.Connect(context.Background(), url, nil)
		require.Error(t, err)
		require.Contains(t, err.Error(), addr, "the error names the server")
		require.NotContains(t, err.Error(), "nats-password")
		require.NotContains(t, err.Error(), "s3cr3t-token")
	}
}
