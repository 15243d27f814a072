package intake_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/prereg/prereg/intake"
)

// serveFront serves the intake's fasthttp front on its capped listener,
// as `prereg serve` does; tweak adjusts the server before it starts.
func serveFront(tb testing.TB, e *env, tweak func(*fasthttp.Server)) string {
	tb.Helper()
	srv := e.svc.FastServer(e.svc.Handler(), nil)
	if tweak != nil {
		tweak(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	go func() { _ = srv.Serve(e.svc.Listener(ln)) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
	})
	return ln.Addr().String()
}

// dialFrom opens a connection from a loopback source address of its own.
func dialFrom(tb testing.TB, src, addr string) net.Conn {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a request on c and reads its answer's status.
func roundTrip(tb testing.TB, c net.Conn, req string) (int, error) {
	tb.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

const campaignGET = "GET /v1/campaigns/test-2021 HTTP/1.1\r\nHost: x\r\n\r\n"

// TestConnectionsPerAddressCapped: one address holds at most
// MaxConnsPerAddr connections (the next is closed unanswered, and its
// place comes back when one closes); a trusted proxy is not capped.
func TestConnectionsPerAddressCapped(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.250/32")}
	})
	addr := serveFront(t, e, nil)
	var held []net.Conn
	for range intake.MaxConnsPerAddr {
		held = append(held, dialFrom(t, "127.0.0.2", addr))
	}
	status, err := roundTrip(t, held[len(held)-1], campaignGET)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "the last connection within the cap is served")

	over := dialFrom(t, "127.0.0.2", addr)
	_, err = roundTrip(t, over, campaignGET)
	require.Error(t, err, "a connection over the cap is closed unanswered")

	other := dialFrom(t, "127.0.0.3", addr)
	status, err = roundTrip(t, other, campaignGET)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "another address has its own cap")

	held[0].Close()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		again := dialFrom(t, "127.0.0.2", addr)
		status, err := roundTrip(t, again, campaignGET)
		require.NoError(c, err)
		require.Equal(c, http.StatusOK, status)
	}, 5*time.Second, 50*time.Millisecond, "a closed connection gives its place back")

	var proxied []net.Conn
	for range intake.MaxConnsPerAddr + 10 {
		proxied = append(proxied, dialFrom(t, "127.0.0.250", addr))
	}
	status, err = roundTrip(t, proxied[len(proxied)-1], campaignGET)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "a trusted proxy is not capped")
}

// TestIdleAndSlowConnectionsStayBounded: thousands of idle connections and
// hundreds that trickle their headers (slowloris) cost bounded memory,
// real requests are still answered meanwhile, and the trickling ones are
// cut off at the read timeout without an answer.
func TestIdleAndSlowConnectionsStayBounded(t *testing.T) {
	e := setup(t, nil)
	addr := serveFront(t, e, func(s *fasthttp.Server) { s.ReadTimeout = 2 * time.Second })
	const idle, slow = 3000, 500
	// Spread over source addresses, under the per-address cap.
	src := func(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/100, 1+i%100) }

	before := footprint()
	var conns []net.Conn
	for i := range idle {
		c := dialFrom(t, src(i), addr)
		if i%2 == 0 {
			// Half have served a request and idle kept alive.
			status, err := roundTrip(t, c, campaignGET)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status)
		}
		conns = append(conns, c)
	}
	slowConns := make([]net.Conn, slow)
	for i := range slow {
		c := dialFrom(t, src(idle+i), addr)
		_, err := io.WriteString(c, "POST /v1/intents HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		require.NoError(t, err)
		slowConns[i] = c
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // a byte now and then on each slow connection
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, c := range slowConns {
					_, _ = c.Write([]byte("a"))
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// Real requests still get answers.
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get("http://" + addr + "/v1/campaigns/test-2021")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	front := *e
	front.url = "http://" + addr
	a := front.post(t, body(nil))
	require.Equal(t, http.StatusAccepted, a.Status, "body: %v", a.Body)

	grown := footprint() - before
	perConn := grown / (idle + slow)
	t.Logf("%d idle and %d slow connections: %d KiB, %d bytes each", idle, slow, grown>>10, perConn)
	// The front serves at most MaxConns connections at once (more get a
	// 503 and are closed): at this cost each, they fit well within the
	// 200 MiB an intake process is given.
	require.Less(t, perConn*intake.MaxConns, 64<<20, "connections at the cap cost well under an intake's 200 MiB")

	// The trickling ones are cut off at the read timeout, unanswered.
	for _, c := range slowConns[:20] {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		b, err := io.ReadAll(c)
		// Closed by the server: with the trickled bytes unread, the
		// kernel may reset the connection instead of ending it.
		if err != nil {
			require.ErrorIs(t, err, syscall.ECONNRESET, "closed by the server")
		}
		require.False(t, strings.HasPrefix(string(b), "HTTP/"), "without an answer: %q", b)
	}
	runtime.KeepAlive(conns)
}

// footprint is the heap and stacks in use, after a collection.
func footprint() int {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int(m.HeapInuse + m.StackInuse)
}
