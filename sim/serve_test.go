package sim_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/sim"
)

// Serve answers until its context ends, then returns without error once
// the server has shut down.
func TestServeStopsOnCancel(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	idp := sim.NewIdP("pass", []byte("secret"), []byte("ci"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sim.Serve(ctx, &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: time.Second}, ln)
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v1/stats")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// The --outage flag of prereg sim idp reads repeated and comma-separated
// outages, and refuses a malformed one.
func TestOutagesFlag(t *testing.T) {
	t.Parallel()
	var o sim.Outages
	require.NoError(t, o.Set("10s-40s"))
	require.NoError(t, o.Set("1m-2m,3m-4m"))
	require.Equal(t, "10s-40s,1m0s-2m0s,3m0s-4m0s", o.String())
	require.Error(t, o.Set("40s-10s"))
}
