package sim

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig configures RunLoad.
type LoadConfig struct {
	// Target is the intake's base URL, e.g. http://127.0.0.1:8080.
	Target string
	// Rate, when positive, sends open-loop: submission i leaves at
	// start + i/Rate whatever the answers, with at most MaxInFlight
	// outstanding. Zero sends closed-loop with Connections workers.
	Rate        float64
	Connections int // closed loop: concurrent connections; 64 when 0
	MaxInFlight int // open loop: bound on outstanding requests; 4096 when 0
	// Timeout bounds one request (10s when 0); Duration bounds the whole
	// run (10 minutes when 0): what is not sent by then is left unsent.
	Timeout  time.Duration
	Duration time.Duration
	// MaxAttempts is how often a submission is tried when the intake sheds
	// (503) or rate-limits (429) it, waiting its Retry-After between
	// tries, as a citizen's app would; 8 when 0. An answer that asks for a
	// longer wait than MaxRetryWait (2s when 0) is final: the person would
	// come back later, after this run.
	MaxAttempts  int
	MaxRetryWait time.Duration
	// AllowRemote permits a target that is not a loopback address: a
	// surge against someone else's server is an attack.
	AllowRemote bool
	// Client overrides the HTTP client (its Timeout is left alone).
	Client *http.Client
	// Progress, when set, is called after each submission is answered
	// with the number answered so far (from several goroutines).
	Progress func(done int)
}

// LoadResult is what RunLoad saw.
type LoadResult struct {
	// Answers has one entry per submission, by Seq; Status 0 means no
	// answer (a transport error, or never sent before the deadline).
	Answers  []Answer
	Sent     int         // submissions sent at least once
	Attempts int         // requests made, retries included
	Errors   int         // requests that got no HTTP answer
	ByStatus map[int]int // final status of each submission
	Elapsed  time.Duration
	// Latency of the answered requests (each attempt counts).
	P50, P99, Max time.Duration
}

// PerSecond is the answered submissions per second.
func (r *LoadResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// ErrRemoteTarget is a target that does not resolve to loopback addresses
// while LoadConfig.AllowRemote is off.
var ErrRemoteTarget = errors.New("load generator: target is not a loopback address (allow remote targets explicitly)")

// RunLoad sends the submissions to the target in Seq order and records
// each answer. It returns when every submission is answered, the Duration
// is over or ctx is cancelled (with what was answered by then).
func RunLoad(ctx context.Context, subs []Submission, cfg LoadConfig) (*LoadResult, error) {
	if err := checkTarget(ctx, cfg.Target, cfg.AllowRemote); err != nil {
		return nil, err
	}
	conns := cmp.Or(cfg.Connections, 64)
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.Duration = cmp.Or(cfg.Duration, 10*time.Minute)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, 8)
	cfg.MaxRetryWait = cmp.Or(cfg.MaxRetryWait, 2*time.Second)
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = max(conns, cfg.MaxInFlight, 100)
		tr.MaxIdleConnsPerHost = tr.MaxIdleConns
		client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	l := &loader{cfg: cfg, client: client, res: &LoadResult{Answers: make([]Answer, len(subs)), ByStatus: map[int]int{}}}
	for i := range l.res.Answers {
		l.res.Answers[i] = Answer{Seq: i}
	}
	start := time.Now()
	if cfg.Rate > 0 {
		l.openLoop(ctx, subs, cmp.Or(cfg.MaxInFlight, 4096))
	} else {
		l.closedLoop(ctx, subs, conns)
	}
	r := l.res
	r.Elapsed = time.Since(start)
	for _, a := range r.Answers {
		r.ByStatus[a.Status]++
	}
	if len(l.lat) > 0 {
		slices.Sort(l.lat)
		q := func(p float64) time.Duration { return l.lat[min(len(l.lat)-1, int(p*float64(len(l.lat))))] }
		r.P50, r.P99, r.Max = q(0.50), q(0.99), l.lat[len(l.lat)-1]
	}
	return r, nil
}

type loader struct {
	cfg    LoadConfig
	client *http.Client
	done   atomic.Int64

	mu  sync.Mutex
	res *LoadResult
	lat []time.Duration
}

func (l *loader) closedLoop(ctx context.Context, subs []Submission, conns int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(subs) {
					return
				}
				l.submit(ctx, &subs[i])
			}
		})
	}
	wg.Wait()
}

func (l *loader) openLoop(ctx context.Context, subs []Submission, inFlight int) {
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	start := time.Now()
	interval := float64(time.Second) / l.cfg.Rate
	for i := range subs {
		due := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			l.submit(ctx, &subs[i])
		})
	}
	wg.Wait()
}

// submit sends one submission, retrying 429 and 503 after Retry-After.
func (l *loader) submit(ctx context.Context, s *Submission) {
	var a Answer
	attempts, failed := 0, 0
	var lats []time.Duration
	for attempts < l.cfg.MaxAttempts && ctx.Err() == nil {
		attempts++
		status, receipt, wait, took, err := l.send(ctx, s)
		if err != nil {
			failed++
			a = Answer{Seq: s.Seq}
			if ctx.Err() != nil {
				break
			}
			wait = 100 * time.Millisecond
		} else {
			lats = append(lats, took)
			a = Answer{Seq: s.Seq, Status: status, Receipt: receipt}
			if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable || wait > l.cfg.MaxRetryWait {
				break
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	l.mu.Lock()
	l.res.Answers[s.Seq] = a
	l.res.Attempts += attempts
	l.res.Errors += failed
	if attempts > 0 {
		l.res.Sent++
	}
	l.lat = append(l.lat, lats...)
	l.mu.Unlock()
	if l.cfg.Progress != nil {
		l.cfg.Progress(int(l.done.Add(1)))
	}
}

// send makes one request and returns its status, the receipt of a 202 and
// the Retry-After of a 429 or 503.
func (l *loader) send(ctx context.Context, s *Submission) (status int, receipt string, wait, took time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	req, err := s.NewRequest(ctx, l.cfg.Target)
	if err != nil {
		return 0, "", 0, 0, err
	}
	t0 := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, "", 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	took = time.Since(t0)
	if err != nil {
		return 0, "", 0, 0, err
	}
	if resp.StatusCode == http.StatusAccepted {
		var v struct {
			Receipt string `json:"receipt"`
		}
		if json.Unmarshal(body, &v) == nil {
			receipt = v.Receipt
		}
	}
	wait = 200 * time.Millisecond
	if sec, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && sec >= 0 {
		wait = time.Duration(sec) * time.Second
	}
	return resp.StatusCode, receipt, wait, took, nil
}

// checkTarget refuses a target that is not loopback unless allowed.
func checkTarget(ctx context.Context, target string, allowRemote bool) error {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("load generator: target %q: want an http(s) base URL such as http://127.0.0.1:8080", target)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return nil
		}
		return ErrRemoteTarget
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("load generator: resolve target: %w", err)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return ErrRemoteTarget
		}
	}
	return nil
}

// DumpLine is one request of a dump: what outside load tools replay.
type DumpLine struct {
	Method  string            `json:"method"`
	URL     string            `json:"url,omitempty"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// WriteDump writes the submissions as JSON lines, one request each, in
// Seq order; target, when set, fills each line's url. Bodies are written
// as strings (every body of the surge is UTF-8, malformed ones included).
func WriteDump(w io.Writer, subs []Submission, target string) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range subs {
		s := &subs[i]
		line := DumpLine{Method: http.MethodPost, Path: IntentPath, Headers: map[string]string{}, Body: string(s.Body)}
		if target != "" {
			line.URL = strings.TrimRight(target, "/") + IntentPath
		}
		for k, v := range s.Headers() {
			line.Headers[k] = v[0]
		}
		if err := enc.Encode(line); err != nil {
			return fmt.Errorf("write dump: %w", err)
		}
	}
	return nil
}

// ReceiptLine is one accepted submission of a load run: the sequence
// number of the submission in the surge and the receipt of its 202. It
// holds nothing personal, so a fault suite can keep it beside its logs and
// match every receipt against the decisions in the database.
type ReceiptLine struct {
	Seq     int    `json:"seq"`
	Receipt string `json:"receipt"`
}

// WriteReceipts writes one JSON line per answer that was a 202 with a
// receipt, in Seq order, and returns how many it wrote.
func WriteReceipts(w io.Writer, answers []Answer) (int, error) {
	enc := json.NewEncoder(w)
	n := 0
	for _, a := range answers {
		if a.Status != http.StatusAccepted || a.Receipt == "" {
			continue
		}
		if err := enc.Encode(ReceiptLine{Seq: a.Seq, Receipt: a.Receipt}); err != nil {
			return n, fmt.Errorf("write receipts: %w", err)
		}
		n++
	}
	return n, nil
}
