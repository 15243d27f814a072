package hostile_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// answerBound is the longest any request may go unanswered and its
// connection open: longer than both listeners' read deadlines (15 s).
const answerBound = 25 * time.Second

// outcome is what a listener did with a case.
type outcome struct {
	status   int
	header   http.Header
	closed   bool // the connection ended without an answer
	reset    bool
	notSent  bool // net/http's client refused to send it
	duration time.Duration
	err      error
}

// sendRaw writes the case on a fresh TCP connection and reads one answer.
func sendRaw(addr string, c hcase) outcome {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return outcome{err: fmt.Errorf("dial: %w", err)}
	}
	defer conn.Close()
	_ = conn.SetDeadline(start.Add(answerBound))
	raw := c.bytes()
	go func() {
		if c.trickle > 0 {
			if _, err := conn.Write(raw[:c.trickleFrom]); err != nil {
				return
			}
			for i := c.trickleFrom; i < len(raw); i++ {
				if _, err := conn.Write(raw[i : i+1]); err != nil {
					return
				}
				time.Sleep(c.trickle)
			}
		} else if _, err := conn.Write(raw); err != nil {
			return
		}
		if c.halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	// An interim answer (100 Continue) is not the answer: read on.
	for err == nil && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(br, nil)
	}
	o := outcome{duration: time.Since(start)}
	if err != nil {
		return classify(o, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	o.status, o.header = resp.StatusCode, resp.Header
	return o
}

func classify(o outcome, err error) outcome {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		o.err = fmt.Errorf("no answer within %s: %w", answerBound, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		o.closed = true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		o.reset = true
	default:
		o.err = err
	}
	return o
}

// client sends the cases net/http's client can express, one connection
// each.
var client = &http.Client{
	Timeout:   answerBound,
	Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// sendClient sends the case through net/http's client.
func sendClient(addr string, c hcase) outcome {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.bytes())))
	if err != nil {
		return outcome{notSent: true}
	}
	body, _ := io.ReadAll(req.Body)
	out, err := http.NewRequest(req.Method, "http://"+addr+req.RequestURI, bytes.NewReader(body))
	if err != nil {
		return outcome{notSent: true}
	}
	for k, vs := range req.Header {
		if k != "Connection" && k != "Content-Length" {
			out.Header[k] = vs
		}
	}
	start := time.Now()
	resp, err := client.Do(out)
	o := outcome{duration: time.Since(start)}
	if err != nil {
		if strings.Contains(err.Error(), "net/http: invalid") || strings.Contains(err.Error(), "invalid method") {
			return outcome{notSent: true}
		}
		return classify(o, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	o.status, o.header = resp.StatusCode, resp.Header
	return o
}

// judge says what is wrong with an outcome, or "".
func judge(c hcase, o outcome) string {
	switch {
	case o.err != nil:
		return o.err.Error()
	case o.closed && !(c.mayClose || c.mayReset):
		return "connection closed without an answer"
	case o.reset && !c.mayReset:
		return "connection reset without an answer"
	case o.closed || o.reset:
		return ""
	case o.status == http.StatusServiceUnavailable:
		if o.header.Get("Retry-After") == "" {
			return "503 without Retry-After"
		}
		return ""
	case o.status == http.StatusNotImplemented && c.may501:
		return ""
	case o.status >= 500:
		return fmt.Sprintf("%d: a server error", o.status)
	case o.status >= 400:
		return ""
	case c.want == noFault:
		return ""
	case c.want == rejectOrRedirect && o.status >= 300 && o.status < 400:
		if loc := o.header.Get("Location"); strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
			return ""
		}
		return fmt.Sprintf("%d to %q: a redirect off the server", o.status, o.header.Get("Location"))
	}
	return fmt.Sprintf("%d: accepted, want a 4xx", o.status)
}

// heapInUse is the process's live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The hostile corpus against both listeners, over raw TCP and net/http's
// client: every answer a 4xx (or a 503 with Retry-After), never another
// 5xx, never a hang, and the heap back where it was afterwards.
func TestHostileCorpus(t *testing.T) {
	st := setup(t)
	s := *seed
	if s == 0 {
		s = time.Now().UnixNano()
	}
	n, slow, maxBody := 300, 2, 1<<20
	if *full {
		n, slow, maxBody = 20000, 16, 8<<20
	}
	g := &generator{bases: st.bases, campaign: st.w.Campaign.ID}
	cases := generate(s, n, maxBody, st.bases, st.w.Campaign.ID)
	cases = append(cases, handWritten(t, st.w.Campaign.ID)...)
	g.rng = newRand(s)
	for i := range slow {
		cases = append(cases, slowloris(g, i%2 == 1))
	}

	before := heapInUse()
	var sent, notSent atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	work := make(chan func())
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f()
			}
		}()
	}
	for _, tg := range st.targets {
		for _, c := range cases {
			modes := []struct {
				name string
				send func(string, hcase) outcome
			}{{"raw", sendRaw}, {"client", sendClient}}
			if c.rawOnly || c.trickle > 0 {
				modes = modes[:1]
			}
			for _, m := range modes {
				do := func() {
					o := m.send(tg.addr, c)
					if o.notSent {
						notSent.Add(1)
						return
					}
					sent.Add(1)
					if p := judge(c, o); p != "" {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s/%s %s: %s", tg.name, m.name, c.name, p))
						mu.Unlock()
					}
				}
				if c.trickle > 0 {
					// Slow cases hold a worker for their whole bound:
					// run them beside the pool.
					wg.Add(1)
					go func() { defer wg.Done(); do() }()
					continue
				}
				work <- do
			}
		}
	}
	close(work)
	wg.Wait()
	after := heapInUse()
	runtime.KeepAlive(cases) // held on both sides of the measure
	growth := int64(after) - int64(before)
	t.Logf("hostile corpus: seed %d, %d cases (%d generated by %d rules, %d hand-written, %d slow), %d requests sent to %d listeners (%d not expressible by net/http's client), %d failures; heap %d KiB before, %d KiB after",
		s, len(cases), n, len(rules), len(cases)-n-slow, slow, sent.Load(), len(st.targets), notSent.Load(), len(failures), before>>10, after>>10)
	require.Empty(t, failures, "every hostile request answered with a 4xx (or 503 with Retry-After), in time")
	require.Less(t, growth, int64(64<<20), "the heap grew by %d KiB over the corpus", growth>>10)
}
