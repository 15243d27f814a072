package intake_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// exchange is what one raw request got: the answer and whether the server
// kept the connection.
type exchange struct {
	status int
	close  bool
}

// readAnswer reads one response off a raw connection, body included.
func readAnswer(t *testing.T, br *bufio.Reader, method string) exchange {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	require.NoError(t, err, "a response")
	_, err = io.Copy(io.Discard, res.Body)
	require.NoError(t, err, "the response's body")
	res.Body.Close()
	return exchange{status: res.StatusCode, close: res.Close}
}

// requireQuiet fails if the server sends anything more on the connection
// before it goes quiet or closes it.
func requireQuiet(t *testing.T, c net.Conn, br *bufio.Reader, wait time.Duration) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	b, err := br.Peek(1)
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("unsolicited bytes after the answers: %q", firstLine(rest, b))
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		require.True(t, errors.As(err, &ne), "want quiet or closed, got %v", err)
	}
}

func firstLine(rest, b []byte) string {
	s := string(rest)
	if s == "" {
		s = string(b)
	}
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// TestEarlyAnswersKeepFraming: an answer given before the body is read
// (413, 415, 429, 503, 404) leaves the connection where the client thinks
// the request ended: a second request on the same TCP connection gets its
// own answer and nothing unsolicited follows, on both servers, whether the
// second request waits for the first answer or is pipelined behind it.
func TestEarlyAnswersKeepFraming(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) {
		c.AddrRate, c.AddrBurst = 0.001, 1
		c.DeviceRate = -1
	})
	// Spend the address's one submission, so that the next is a 429.
	require.Equal(t, http.StatusAccepted, e.post(t, body(map[string]any{"device_id": "spent"})).Status)
	open := setup(t, func(c *intake.Config) { c.DeviceRate = -1 })
	draining := setup(t, nil)
	draining.svc.Stop() // every submission is now a 503

	intent := `{"campaign":"test-2021","provider":"pass","identity_token":"t","birthdate":"1990-08-19","phone":"010-1234-5678","region":"11680","device_id":"d"}`
	big := strings.Repeat("x", intake.MaxBody+100)
	post := func(path, ct, body string, extra ...string) string {
		h := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + ct + "\r\n"
		for _, x := range extra {
			h += x + "\r\n"
		}
		return h + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	}
	chunked := func(path, ct, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + ct + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	}
	const next = "GET /v1/campaigns/test-2021 HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct {
		name   string
		env    *env
		first  string
		status int
	}{
		{"413 by Content-Length", e, post("/v1/intents", "application/json", big), http.StatusRequestEntityTooLarge},
		{"413 chunked", open, chunked("/v1/intents", "application/json", big), http.StatusRequestEntityTooLarge},
		{"415", e, post("/v1/intents", "text/plain", intent), http.StatusUnsupportedMediaType},
		{"415 chunked", e, chunked("/v1/intents", "text/plain", intent), http.StatusUnsupportedMediaType},
		{"429", e, post("/v1/intents", "application/json", intent), http.StatusTooManyRequests},
		{"429 chunked", e, chunked("/v1/intents", "application/json", intent), http.StatusTooManyRequests},
		{"429 with Expect", e, post("/v1/intents", "application/json", intent, "Expect: 100-continue"), http.StatusTooManyRequests},
		{"503", draining, post("/v1/intents", "application/json", intent), http.StatusServiceUnavailable},
		{"404 with a body", e, post("/v1/nowhere", "application/json", intent), http.StatusNotFound},
		{"404 of a status with a body", e, post("/v1/campaigns/nope", "application/json", intent), http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		for _, srv := range []struct{ name, url string }{{"fasthttp", c.env.url}, {"net/http", c.env.stdURL}} {
			for _, pipelined := range []bool{false, true} {
				name := c.name + "/" + srv.name
				if pipelined {
					name += "/pipelined"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
					require.NoError(t, err)
					defer conn.Close()
					br := bufio.NewReader(conn)
					first := c.first
					if pipelined {
						first += next
					}
					_, err = io.WriteString(conn, first)
					require.NoError(t, err)
					a := readAnswer(t, br, "POST")
					if a.status == http.StatusContinue {
						a = readAnswer(t, br, "POST")
					}
					require.Equal(t, c.status, a.status, "the first request's answer")
					if a.close {
						// A server that says it closes owes nothing more;
						// it must not answer what it did not read.
						requireQuiet(t, conn, br, 2*time.Second)
						return
					}
					if !pipelined {
						_, err = io.WriteString(conn, next)
						require.NoError(t, err)
					}
					b := readAnswer(t, br, "GET")
					require.Equal(t, http.StatusOK, b.status, "the second request's own answer")
					requireQuiet(t, conn, br, 300*time.Millisecond)
				})
			}
		}
	}
}

// TestFreshIdleConnectionGetsNoAnswer: a connection a client opens and
// never uses (HTTP clients dial ahead and keep spare connections) is closed
// at the read timeout without a word: an answer there is one the client
// never asked for.
func TestFreshIdleConnectionGetsNoAnswer(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	srv := e.svc.FastServer(e.svc.Handler(), nil)
	srv.ReadTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
	})
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(conn)
	require.NoError(t, err, "the server closes the connection")
	require.Empty(t, string(b), "and sends nothing")
}
