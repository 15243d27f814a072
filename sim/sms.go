package sim

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/time/rate"
)

// GatewayConfig configures the simulated SMS gateway.
type GatewayConfig struct {
	// Handsets receive what the gateway delivers; new ones when nil.
	Handsets *Handsets
	// IgnoreIdempotency makes the gateway send every request, whatever
	// its Idempotency-Key: a gateway without de-duplication.
	IgnoreIdempotency bool
	// Rate is the account's limit in messages per second (0: none), Burst
	// its bucket (default 1). Over it the gateway answers 429.
	Rate  float64
	Burst int
	// ReportURL receives the signed delivery reports (POST, the body of
	// notify's Report, header X-Sms-Signature); none are sent when empty.
	ReportURL    string
	ReportSecret []byte
	// ReportDelay is how long after delivery the report is posted.
	ReportDelay time.Duration
	// ReportWorkers post reports concurrently (default 4).
	ReportWorkers int
	Faults        SMSFaults
	Client        *http.Client
	Now           func() time.Time
	Logger        *slog.Logger
}

// SMSFaults is what the simulated gateway does wrong; it can be changed
// while it serves (SetFaults).
// Over HTTP: PUT /v1/faults {"down":true,"error_rate":0.1,"latency":"20ms"}.
type SMSFaults struct {
	Down      bool     `json:"down,omitempty"`       // every send answered 503: an outage
	ErrorRate float64  `json:"error_rate,omitempty"` // the fraction of sends answered 500
	Latency   Duration `json:"latency,omitempty"`    // added before every answer
}

// Attempt is one send request the gateway saw. It holds no phone.
type Attempt struct {
	At     time.Time
	Key    string
	Status int // the HTTP status answered
}

// Gateway is the simulated SMS gateway. It records every send attempt,
// honours Idempotency-Key (unless told not to), enforces its own rate
// limit, delivers to the Handsets and posts signed delivery reports.
//
// Protocol: see notify.Gateway; plus GET /v1/stats and PUT /v1/faults.
type Gateway struct {
	cfg      GatewayConfig
	handsets *Handsets
	limiter  *rate.Limiter
	log      *slog.Logger

	faults atomic.Pointer[SMSFaults]

	mu       sync.Mutex
	attempts []Attempt
	byKey    map[string]string // idempotency key → first message id
	accepted map[string]int    // idempotency key → messages sent for it
	seq      int64

	reportQueue  []pendingReport
	reportMu     sync.Mutex
	reportCond   *sync.Cond
	reportsSent  atomic.Int64
	reportsLost  atomic.Int64
	reportsQueue atomic.Int64
	closed       bool
	wg           sync.WaitGroup
}

type pendingReport struct {
	due  time.Time
	body []byte
}

// NewGateway starts a simulated gateway; Close stops its report senders.
func NewGateway(cfg GatewayConfig) *Gateway {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	g := &Gateway{
		cfg:      cfg,
		handsets: cfg.Handsets,
		log:      cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		byKey:    map[string]string{},
		accepted: map[string]int{},
	}
	if g.handsets == nil {
		g.handsets = NewHandsets()
	}
	if cfg.Rate > 0 {
		g.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), cmp.Or(cfg.Burst, 1))
	}
	f := cfg.Faults
	g.faults.Store(&f)
	g.reportCond = sync.NewCond(&g.reportMu)
	if cfg.ReportURL != "" {
		for range cmp.Or(cfg.ReportWorkers, 4) {
			g.wg.Go(g.postReports)
		}
	}
	return g
}

// Close stops posting reports (those still queued are dropped) and waits
// for the senders.
func (g *Gateway) Close() {
	g.reportMu.Lock()
	g.closed = true
	g.reportCond.Broadcast()
	g.reportMu.Unlock()
	g.wg.Wait()
}

// Handsets are the phones this gateway delivers to.
func (g *Gateway) Handsets() *Handsets { return g.handsets }

// SetFaults changes what the gateway does wrong from now on.
func (g *Gateway) SetFaults(f SMSFaults) { g.faults.Store(&f) }

// Handler serves the gateway's HTTP API.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", g.serveSend)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.Stats())
	})
	mux.HandleFunc("PUT /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var f SMSFaults
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&f); err != nil || f.ErrorRate < 0 || f.ErrorRate > 1 || f.Latency < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request"})
			return
		}
		g.SetFaults(f)
		writeJSON(w, http.StatusOK, f)
	})
	return mux
}

type smsRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
	Type string `json:"type"`
}

func (g *Gateway) serveSend(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	status := g.send(w, r, key)
	g.mu.Lock()
	g.attempts = append(g.attempts, Attempt{At: g.cfg.Now(), Key: key, Status: status})
	g.mu.Unlock()
}

func (g *Gateway) send(w http.ResponseWriter, r *http.Request, key string) int {
	f := g.faults.Load()
	if f.Latency > 0 {
		select {
		case <-time.After(time.Duration(f.Latency)):
		case <-r.Context().Done():
			return 499
		}
	}
	fail := func(status int, code string) int {
		writeJSON(w, status, map[string]any{"error": code})
		return status
	}
	if f.Down {
		return fail(http.StatusServiceUnavailable, "unavailable")
	}
	if f.ErrorRate > 0 && mrand.Float64() < f.ErrorRate {
		return fail(http.StatusInternalServerError, "internal")
	}
	var req smsRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10)).Decode(&req); err != nil || req.Text == "" || key == "" {
		return fail(http.StatusBadRequest, "bad_request")
	}
	if !ValidMobile(req.To) {
		return fail(http.StatusBadRequest, "invalid_number")
	}
	// The carrier counts EUC-KR bytes: the gateway checks the sender's
	// choice of SMS or LMS on its own count.
	limit := 90
	if req.Type == "lms" {
		limit = 2000
	}
	if euckrLen(req.Text) > limit {
		return fail(http.StatusBadRequest, "too_long")
	}
	if g.limiter != nil && !g.limiter.Allow() {
		w.Header().Set("Retry-After", "1")
		return fail(http.StatusTooManyRequests, "rate_limited")
	}
	g.mu.Lock()
	if id, seen := g.byKey[key]; seen && !g.cfg.IgnoreIdempotency {
		g.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"message_id": id, "duplicate": true})
		return http.StatusOK
	}
	g.seq++
	id := "m" + strconv.FormatInt(g.seq, 10) + "-" + randomHex(4)
	if _, seen := g.byKey[key]; !seen {
		g.byKey[key] = id
	}
	g.accepted[key]++
	g.mu.Unlock()

	g.handsets.Receive(req.To, key, req.Text)
	g.queueReport(id, key)
	writeJSON(w, http.StatusAccepted, map[string]any{"message_id": id})
	return http.StatusAccepted
}

func euckrLen(s string) int {
	b, err := encoding.ReplaceUnsupported(korean.EUCKR.NewEncoder()).String(s)
	if err != nil {
		return 2 * len([]rune(s))
	}
	return len(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// GatewayStats are the gateway's counts.
type GatewayStats struct {
	Attempts          int   `json:"attempts"`           // every send request
	Accepted          int   `json:"accepted"`           // messages sent to a handset
	Suppressed        int   `json:"suppressed"`         // repeats answered from the idempotency record
	Refused           int   `json:"refused"`            // 4xx and 5xx answers
	RepeatedKeys      int   `json:"repeated_keys"`      // keys sent more than once (only without idempotency)
	ReportsSent       int64 `json:"reports_sent"`       // delivery reports the webhook took
	ReportsLost       int64 `json:"reports_lost"`       // refused, or given up after retries
	ReportsQueued     int64 `json:"reports_queued"`     // not posted yet
	HandsetDeliveries int   `json:"handset_deliveries"` // counted at the phones
	HandsetDuplicates int   `json:"handset_duplicates"`
}

// Stats returns the gateway's counts.
func (g *Gateway) Stats() GatewayStats {
	g.mu.Lock()
	var s GatewayStats
	s.Attempts = len(g.attempts)
	for _, a := range g.attempts {
		switch {
		case a.Status == http.StatusAccepted:
			s.Accepted++
		case a.Status == http.StatusOK:
			s.Suppressed++
		default:
			s.Refused++
		}
	}
	for _, n := range g.accepted {
		if n > 1 {
			s.RepeatedKeys++
		}
	}
	g.mu.Unlock()
	s.ReportsSent, s.ReportsLost, s.ReportsQueued = g.reportsSent.Load(), g.reportsLost.Load(), g.reportsQueue.Load()
	s.HandsetDeliveries, s.HandsetDuplicates = g.handsets.Total(), g.handsets.Duplicates()
	return s
}

// Attempts returns a copy of every send attempt so far, in arrival order.
func (g *Gateway) Attempts() []Attempt {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Attempt(nil), g.attempts...)
}

// AcceptedKey is how many messages the gateway sent for a key: more than
// one only when it ignores idempotency keys.
func (g *Gateway) AcceptedKey(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.accepted[key]
}

// gatewayReport mirrors notify.Report; the gateway is an outside system and
// does not import prereg's stages.
type gatewayReport struct {
	MessageID string    `json:"message_id"`
	Key       string    `json:"idempotency_key"`
	Status    string    `json:"status"`
	At        time.Time `json:"at"`
}

func (g *Gateway) queueReport(id, key string) {
	if g.cfg.ReportURL == "" {
		return
	}
	body, _ := json.Marshal(gatewayReport{MessageID: id, Key: key, Status: "delivered", At: g.cfg.Now().UTC()})
	g.reportMu.Lock()
	g.reportQueue = append(g.reportQueue, pendingReport{due: time.Now().Add(g.cfg.ReportDelay), body: body})
	g.reportsQueue.Add(1)
	g.reportCond.Signal()
	g.reportMu.Unlock()
}

func (g *Gateway) postReports() {
	for {
		g.reportMu.Lock()
		for len(g.reportQueue) == 0 && !g.closed {
			g.reportCond.Wait()
		}
		if g.closed {
			g.reportMu.Unlock()
			return
		}
		rep := g.reportQueue[0]
		g.reportQueue = g.reportQueue[1:]
		g.reportMu.Unlock()
		if d := time.Until(rep.due); d > 0 {
			time.Sleep(d)
		}
		status := 0
		for attempt := range 5 {
			// A 4xx will not change by retrying: the report is refused.
			if status = g.postReport(rep.body); status >= 200 && status < 500 {
				break
			}
			time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
		}
		if status >= 200 && status < 300 {
			g.reportsSent.Add(1)
		} else {
			g.reportsLost.Add(1)
			g.log.Warn("sim sms: delivery report not taken", slog.Int("status", status))
		}
		g.reportsQueue.Add(-1)
	}
}

// postReport posts one report and returns the webhook's status (0 when
// none came).
func (g *Gateway) postReport(body []byte) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.ReportURL, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sms-Signature", SignReport(g.cfg.ReportSecret, body, g.cfg.Now()))
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// SignReport is the gateway's signature of a report body at t:
// "t=UNIX,v1=" + hex HMAC-SHA-256(secret, "UNIX." + body).
func SignReport(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}
