package hostile_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A hostile intent on a kept-alive connection must not shift the framing
// of the request after it: a health check sent behind it on the same
// connection is answered as a health check (or the server closes the
// connection after the first answer, which is its right).
func TestKeepAliveFraming(t *testing.T) {
	st := setup(t)
	n := 60
	if *full {
		n = 2000
	}
	cases := generate(*seed, n*len(rules), 1<<10, st.bases, st.w.Campaign.ID)
	var pairs int
	var slips []string
	for _, tg := range st.targets {
		for _, c := range cases {
			if c.lazy != nil || c.halfClose || c.trickle > 0 || !bytes.HasPrefix(c.raw, []byte("POST /v1/intents ")) {
				continue
			}
			first := bytes.Replace(c.raw, []byte("Connection: close\r\n"), nil, 1)
			second := []byte("GET /healthz HTTP/1.1\r\nHost: prereg.test\r\nConnection: close\r\n\r\n")
			pairs++
			if p := sendPair(tg.addr, append(first, second...)); p != "" {
				slips = append(slips, tg.name+" "+c.name+": "+p)
			}
		}
	}
	t.Logf("keep-alive framing: %d pairs, %d slips", pairs, len(slips))
	require.Empty(t, slips, "the request after a hostile one is read as itself")
}

// sendPair writes two pipelined requests and checks the second answer.
func sendPair(addr string, raw []byte) string {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(answerBound))
	go func() { _, _ = conn.Write(raw) }()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "first answer: " + err.Error()
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
		return "first answer " + resp.Status
	}
	if resp.Close {
		return "" // the server ends the connection: nothing to mis-frame
	}
	resp2, err := http.ReadResponse(br, nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "second answer never came"
		}
		return "" // closed: the server gave up on the connection
	}
	defer resp2.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp2.Body, 256))
	if resp2.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("ok")) {
		return "health check behind it answered " + resp2.Status
	}
	return ""
}
