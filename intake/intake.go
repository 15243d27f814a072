package intake

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/stream"
)

// Config configures the intake. JetStream, Campaigns, Hasher and Sealer are
// required; the rest have defaults.
type Config struct {
	JetStream jetstream.JetStream
	// Conn, when set, lets intake shed at once while disconnected instead
	// of waiting for a publish to time out, and report it in Ready.
	Conn      *nats.Conn
	Campaigns CampaignSource
	// Clinics, when set, lists the clinics of campaigns that Campaigns
	// lists without them (GET /v1/campaigns/{id}/clinics, the clinic
	// check of a submission).
	Clinics ClinicSource
	// Lottery, when set, publishes each window's lottery seed commitment on
	// GET /v1/campaigns/{id}.
	Lottery Commitments
	// Pauses, when set, are the operators' pauses of campaigns, read with
	// the campaigns (pause.go).
	Pauses Pauses
	// Statuses answers the status lookup; without it every well-formed
	// receipt is "received".
	Statuses StatusReader
	// Requests records changes and cancellations (PATCH
	// /v1/intents/{receipt}, POST /v1/intents/{receipt}/cancel); without
	// it both answer 503.
	Requests Requests
	// Hasher makes the keyed hashes: each campaign's with the key it is
	// pinned to (campaign.Campaign.HMACKey), receipts checked under all.
	Hasher   *keys.Hasher
	Sealer   *keys.Sealer
	Registry prometheus.Registerer
	Logger   *slog.Logger
	Now      func() time.Time

	// Refresh is how often campaigns and providers' health are re-read
	// (default 5s).
	Refresh time.Duration
	// PublishTimeout bounds the wait for an ack (default 2s).
	PublishTimeout time.Duration
	// MaxInFlight bounds the publishes waiting for an ack (default 256).
	MaxInFlight int
	// SlowAck is the target ack latency: when the moving average of acks
	// is above it, the in-flight bound is lowered in proportion
	// (default 50ms).
	SlowAck time.Duration
	// MaxQueueWait is the standing wait of a readable connection (how long
	// the guard's probe waited to be read, the least over 20 ms; lag.go)
	// above which intake starts shedding submissions first thing, and
	// then holds at half this by the rate it admits (default 10ms;
	// negative disables).
	MaxQueueWait time.Duration
	// RetryAfter is what 503 answers tell clients to wait (default 1s).
	RetryAfter time.Duration
	// GroupCommit publishes the intents that arrive together as one
	// JetStream atomic batch (group.go): on a JetStream that fsyncs every
	// write (sync_interval: always) one flush then covers many intents.
	// It needs NATS ≥ 2.12 and the submitted stream declared with atomic
	// batches allowed (stream.Config.AtomicBatches); Start checks.
	GroupCommit bool

	// Per-device and per-address token buckets: tokens per second and
	// burst. Defaults: a device 1 every 10 s with a burst of 5 (a person
	// retrying); an address 20 per second with a burst of 200 (many people
	// share an address behind carrier NAT). A negative rate disables the
	// limit.
	DeviceRate  float64
	DeviceBurst int
	AddrRate    float64
	AddrBurst   int
	// LookupRate limits status lookups per address (default 2/s, burst 20).
	LookupRate  float64
	LookupBurst int
	// LookupMaxFailures is how many wrong birth dates lock a receipt's
	// lookups (default 5), on every replica; the lock lasts LookupLockout
	// (default 1 min), doubled for each wrong birth date after it, at
	// most LookupMaxLockout (default 24 h, shorter than the
	// stream.ReceiptLookups bucket's TTL).
	LookupMaxFailures int
	LookupLockout     time.Duration
	LookupMaxLockout  time.Duration
	// LimiterSlots is the number of buckets of each limiter (default 2^20:
	// 8 MiB each, whatever the number of devices or addresses).
	LimiterSlots int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// IPv6Prefix is how many leading bits of an IPv6 client address the
	// per-address limits and the published address hash key on
	// (AddrPrefix; default DefaultIPv6Prefix). IPv4 keys on the address.
	IPv6Prefix int
}

func (c Config) withDefaults() Config {
	c.Refresh = cmp.Or(c.Refresh, 5*time.Second)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 2*time.Second)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, 256)
	c.SlowAck = cmp.Or(c.SlowAck, 50*time.Millisecond)
	c.RetryAfter = cmp.Or(c.RetryAfter, time.Second)
	c.MaxQueueWait = cmp.Or(c.MaxQueueWait, 10*time.Millisecond)
	c.DeviceRate = cmp.Or(c.DeviceRate, 0.1)
	c.DeviceBurst = cmp.Or(c.DeviceBurst, 5)
	c.AddrRate = cmp.Or(c.AddrRate, 20)
	c.AddrBurst = cmp.Or(c.AddrBurst, 200)
	c.LookupRate = cmp.Or(c.LookupRate, 2)
	c.LookupBurst = cmp.Or(c.LookupBurst, 20)
	c.LookupMaxFailures = cmp.Or(c.LookupMaxFailures, 5)
	c.LookupLockout = cmp.Or(c.LookupLockout, time.Minute)
	c.LookupMaxLockout = cmp.Or(c.LookupMaxLockout, 24*time.Hour)
	c.LimiterSlots = cmp.Or(c.LimiterSlots, 1<<20)
	c.IPv6Prefix = cmp.Or(c.IPv6Prefix, DefaultIPv6Prefix)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Service is a running intake. Register its routes on a mux, Start it, and
// Stop it after the HTTP server stopped taking requests.
type Service struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	m        *metrics
	counters map[string]map[int]prometheus.Counter
	receipts Receipts
	devices  *Limiter
	addrs    *Limiter
	lookups  *Limiter
	// bodies and lockout are the receipt buckets (stream/kv.go), bound
	// by Start.
	bodies   jetstream.KeyValue
	lockout  *lockout
	adm      *admission
	group    *grouper // with GroupCommit, from Start
	guard    *cpuGuard
	cat      refresher
	draining atomic.Bool
	// retryAfter is the 503s' Retry-After header value.
	retryAfter []string

	mu        sync.Mutex
	cancel    context.CancelFunc
	done      chan struct{}
	guardDone chan struct{}
}

// New builds an intake from its configuration.
func New(cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.JetStream == nil:
		return nil, errors.New("intake: JetStream is required")
	case cfg.Campaigns == nil:
		return nil, errors.New("intake: a campaign source is required")
	case cfg.Hasher == nil || cfg.Sealer == nil:
		return nil, errors.New("intake: the hasher and the sealer are required")
	case cfg.LookupMaxFailures < 1 || cfg.LookupLockout <= 0 || cfg.LookupMaxLockout < cfg.LookupLockout:
		return nil, errors.New("intake: the lookup lockout wants at least one failure and 0 < LookupLockout <= LookupMaxLockout")
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("intake: metrics: %w", err)
	}
	s := &Service{
		cfg:        cfg,
		log:        cfg.Logger,
		now:        cfg.Now,
		m:          m,
		counters:   routeCounters(m),
		receipts:   Receipts{Hasher: cfg.Hasher},
		devices:    NewLimiter(cfg.DeviceRate, cfg.DeviceBurst, cfg.LimiterSlots, cfg.Now),
		addrs:      NewLimiter(cfg.AddrRate, cfg.AddrBurst, cfg.LimiterSlots, cfg.Now),
		lookups:    NewLimiter(cfg.LookupRate, cfg.LookupBurst, cfg.LimiterSlots/4, cfg.Now),
		adm:        &admission{max: int64(cfg.MaxInFlight), slow: cfg.SlowAck},
		retryAfter: []string{retryAfter(cfg.RetryAfter)},
	}
	if cfg.MaxQueueWait > 0 {
		s.guard = newCPUGuard(cfg.MaxQueueWait)
	}
	s.cat = refresher{source: cfg.Campaigns, clinics: cfg.Clinics, lottery: cfg.Lottery, pauses: cfg.Pauses,
		cacheControlH: []string{"public, max-age=" + strconv.Itoa(max(1, int(cfg.Refresh/time.Second)))}, js: cfg.JetStream, log: cfg.Logger, now: cfg.Now,
		hasher: cfg.Hasher, keys: &keys.Alarm{Stage: "intake", Logger: cfg.Logger}}
	return s, nil
}

// Start loads the campaigns (an error if it cannot) and keeps refreshing
// them in the background until Stop.
func (s *Service) Start(ctx context.Context) error {
	loadCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.cat.refresh(loadCtx); err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if s.cfg.GroupCommit {
		if err := s.checkGroupCommit(loadCtx); err != nil {
			return fmt.Errorf("intake: %w", err)
		}
	}
	// The buckets' streams may still be electing their leaders when every
	// process of a cluster starts at once.
	if err := stream.WhenReady(loadCtx, s.log, "bind the receipt buckets", s.bindBuckets); err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("intake: already started")
	}
	if s.cfg.GroupCommit {
		s.group = newGrouper(s.cfg.JetStream.Conn(), s.cfg.PublishTimeout, func(n int) { s.m.groupSize.Observe(float64(n)) }, s.log)
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = stop, make(chan struct{})
	go s.cat.loop(bg, s.cfg.Refresh, s.done)
	if s.guard != nil {
		s.guardDone = make(chan struct{})
		go s.guard.run(bg, s.log, s.guardDone)
	}
	return nil
}

// Stop refuses new intents (503) and waits for the publishes in flight to
// get their acks, so that every 202 already promised is kept and no
// accepted publish is abandoned half way. It is idempotent.
func (s *Service) Stop() {
	s.draining.Store(true)
	s.mu.Lock()
	cancel, done, guardDone, group := s.cancel, s.done, s.guardDone, s.group
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
		if guardDone != nil {
			<-guardDone
		}
	}
	s.adm.close()
	if group != nil && cancel != nil {
		group.close()
	}
}

// checkGroupCommit makes sure the submitted stream takes atomic batches,
// so that group commit fails at start rather than on every publish.
func (s *Service) checkGroupCommit(ctx context.Context) error {
	st, err := s.cfg.JetStream.Stream(ctx, stream.Submitted)
	if err != nil {
		return fmt.Errorf("group commit: stream %s: %w", stream.Submitted, err)
	}
	if !st.CachedInfo().Config.AllowAtomicPublish {
		return fmt.Errorf("group commit: stream %s does not allow atomic batches: it needs NATS 2.12 or later and the stream declared with them (stream.Config.AtomicBatches)", stream.Submitted)
	}
	return nil
}

// Ready fails while JetStream is unreachable or the stream is refusing
// intents for its storage limits; it turns true again by itself.
func (s *Service) Ready(context.Context) error {
	if s.cfg.Conn != nil && !s.cfg.Conn.IsConnected() {
		return errors.New("intake: jetstream unreachable")
	}
	if s.now().UnixNano() < s.adm.storageFullUntil.Load() {
		return errors.New("intake: shedding: stream storage full")
	}
	return s.cat.keys.Err()
}

// Refresh re-reads the campaigns and providers' health now.
func (s *Service) Refresh(ctx context.Context) error { return s.cat.refresh(ctx) }

// Register adds intake's routes to mux.
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", s.count("page", http.HandlerFunc(s.servePage)))
	mux.Handle("GET /assets/intake.js", s.count("page", http.HandlerFunc(serveScript)))
	mux.Handle("POST /submit", s.count("page", http.HandlerFunc(s.serveSubmitForm)))
	mux.Handle("POST /lookup", s.count("page", http.HandlerFunc(s.serveLookupForm)))
	mux.Handle("GET /v1/campaigns/{id}", s.count("campaign", http.HandlerFunc(s.serveCampaign)))
	mux.Handle("GET /v1/campaigns/{id}/regions", s.count("campaign", http.HandlerFunc(s.serveRegions)))
	mux.Handle("GET /v1/campaigns/{id}/clinics", s.count("campaign", http.HandlerFunc(s.serveClinics)))
	mux.Handle("POST /v1/intents", s.count("submit", http.HandlerFunc(s.serveSubmit)))
	mux.Handle("GET /v1/intents/{receipt}", s.count("status", http.HandlerFunc(s.serveStatus)))
	mux.Handle("PATCH /v1/intents/{receipt}", s.count("change", http.HandlerFunc(s.serveChange)))
	mux.Handle("POST /v1/intents/{receipt}/cancel", s.count("cancel", http.HandlerFunc(s.serveCancel)))
}

// Handler is a mux with only intake's routes.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// statusWriter remembers the status a handler wrote, for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Service) count(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		s.countStatus(route, sw.status)
	})
}

// countStatus counts an answer (0: nothing written, which is a 200).
func (s *Service) countStatus(route string, status int) {
	status = cmp.Or(status, http.StatusOK)
	if c, ok := s.counters[route][status]; ok {
		c.Inc()
		return
	}
	s.m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}

// routeCounters are the request counters of each route's usual answers,
// looked up once.
func routeCounters(m *metrics) map[string]map[int]prometheus.Counter {
	all := map[string]map[int]prometheus.Counter{}
	for _, route := range []string{"page", "campaign", "submit", "status"} {
		all[route] = map[int]prometheus.Counter{}
		for _, code := range []int{200, 202, 304, 400, 403, 404, 413, 415, 422, 429, 503} {
			all[route][code] = m.requests.WithLabelValues(route, strconv.Itoa(code))
		}
	}
	return all
}

// writeAccepted writes the 202: {"receipt", "status", "status_url",
// "next"}, next being the window's, encoded with the catalog (next.go).
// It is appended by hand, as the hottest answer of the service; a receipt
// is base64url, which needs no JSON escaping.
func writeAccepted(w http.ResponseWriter, receipt string, next []byte) {
	b := make([]byte, 0, 80+2*len(receipt)+len(next))
	b = append(b, `{"receipt":"`...)
	b = append(b, receipt...)
	b = append(b, `","status":"`+string(prereg.StatusReceived)+`","status_url":"/v1/intents/`...)
	b = append(b, receipt...)
	b = append(b, '"')
	b = append(b, next...)
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(b)
}

// overloadedBody is the 503's body, encoded once: under overload the
// refusal must cost as little as possible.
var overloadedBody = []byte(`{"error":"` + httpapi.CodeOverloaded + `"}` + "\n")

func (s *Service) shed(w http.ResponseWriter, reason string) {
	s.m.shed.WithLabelValues(reason).Inc()
	h := w.Header()
	h["Retry-After"] = s.retryAfter
	h["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(overloadedBody)
}

var jsonContentType = []string{"application/json; charset=utf-8"}

func (s *Service) limited(w http.ResponseWriter, limit string, wait time.Duration) {
	s.m.rateLimited.WithLabelValues(limit).Inc()
	w.Header().Set("Retry-After", retryAfter(wait))
	httpapi.WriteError(w, httpapi.CodeRateLimited, map[string]any{"limit": limit})
}

func invalid(w http.ResponseWriter, err error) {
	var fe FieldErrors
	if !errors.As(err, &fe) {
		fe = FieldErrors{"body": "not a valid intent"}
	}
	httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": fe})
}

// jsonContent reports whether a Content-Type says the body is JSON (UTF-8).
func jsonContent(contentType string) bool {
	if contentType == "application/json" {
		return true // the common case, without parsing
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || cs == "utf-8" || cs == "UTF-8"
}

// submission is what a submit needs of its HTTP request, whichever server
// (net/http or the fasthttp front, see fast.go) read it.
type submission struct {
	ctx           context.Context
	contentType   string
	contentLength int64 // -1 when unknown
	idemKey       string
	// addr is the client's address: the peer, or what a trusted proxy
	// says in X-Forwarded-For.
	addr func() netip.Addr
	// body reads the body, at most MaxBody bytes (*http.MaxBytesError
	// past that).
	body func() ([]byte, error)
	// refusalAsked: the server already asked refusesAtOnce, and was not
	// refused (the fasthttp front asks before it reads anything).
	refusalAsked bool
}

func (s *Service) serveSubmit(w http.ResponseWriter, r *http.Request) {
	s.submit(w, submission{
		ctx:           r.Context(),
		contentType:   r.Header.Get("Content-Type"),
		contentLength: r.ContentLength,
		idemKey:       r.Header.Get("Idempotency-Key"),
		addr:          func() netip.Addr { return ClientAddr(r, s.cfg.TrustedProxies) },
		body:          func() ([]byte, error) { return io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody)) },
	})
}

// submit answers POST /v1/intents: checks, admission, the receipt, the
// publish, and the 202 once the stream has acknowledged. Each step that
// refuses writes the answer itself and reports false; the cheapest
// refusals come first. Each step takes what it needs as arguments, with
// no closure and nothing kept past the call: this is the hot path, and
// splitting it must not cost an allocation.
func (s *Service) submit(w http.ResponseWriter, r submission) {
	addr, ok := s.admit(w, r)
	if !ok {
		return
	}
	req, ok := readRequest(w, r)
	if !ok {
		return
	}
	e, ok := s.campaign(w, req.Campaign)
	if !ok {
		return
	}
	if s.paused(w, e) {
		return
	}
	c := e.c
	if e.hasher == nil {
		// The campaign is pinned to a key this process lacks: the
		// operator's to fix (the alarm says so), the client's to retry.
		s.shed(w, shedKeyMissing)
		return
	}
	v, ok := validateSubmission(w, req, e, r.idemKey)
	if !ok {
		return
	}
	if ok, wait := s.devices.Allow(c.ID + "\x00" + v.DeviceID); !ok {
		s.limited(w, "device", wait)
		return
	}
	now := s.now()
	win, open := c.OpenWindow(v.Birth, now)
	if !open {
		s.windowClosed(w, c, v.Birth, now)
		return
	}
	receipt, bodyKey := s.receiptOf(e.hasher, c, &v, r.idemKey)
	if bodyKey != nil && !s.firstBody(r.ctx, w, receipt, bodyKey) {
		return
	}
	intent := s.intentOf(e.hasher, c, win, &v, receipt, addr, now)
	if !s.publishIntent(w, c, &intent) {
		return
	}
	writeAccepted(w, receipt, e.next[win.ID])
}

// admit runs the checks that need no body, cheapest first, and returns
// the client's address. Out of CPU, a refusal comes before anything
// else, which is the cheapest answer there is; when the stream is known
// to refuse, the body is not even read.
func (s *Service) admit(w http.ResponseWriter, r submission) (netip.Addr, bool) {
	if !r.refusalAsked {
		if reason, refused := s.refusesAtOnce(); refused {
			s.shed(w, reason)
			return netip.Addr{}, false
		}
	}
	if !jsonContent(r.contentType) {
		httpapi.WriteError(w, httpapi.CodeUnsupportedMedia, map[string]any{"want": "application/json"})
		return netip.Addr{}, false
	}
	if r.contentLength > MaxBody {
		httpapi.WriteError(w, httpapi.CodeTooLarge, map[string]any{"max_bytes": MaxBody})
		return netip.Addr{}, false
	}
	addr := r.addr()
	if ok, wait := s.addrs.Allow(AddrKey(addr, s.cfg.IPv6Prefix)); !ok {
		s.limited(w, "address", wait)
		return netip.Addr{}, false
	}
	if s.cfg.Conn != nil && !s.cfg.Conn.IsConnected() {
		s.shed(w, shedUnreachable)
		return netip.Addr{}, false
	}
	if reason, refused := s.adm.refuses(s.now()); refused {
		s.shed(w, reason)
		return netip.Addr{}, false
	}
	return addr, true
}

// readRequest reads and decodes the body.
func readRequest(w http.ResponseWriter, r submission) (Request, bool) {
	body, err := r.body()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpapi.WriteError(w, httpapi.CodeTooLarge, map[string]any{"max_bytes": MaxBody})
			return Request{}, false
		}
		invalid(w, FieldErrors{"body": "could not be read"})
		return Request{}, false
	}
	req, err := DecodeRequest(body)
	if err != nil {
		invalid(w, err)
		return Request{}, false
	}
	return req, true
}

// validateSubmission validates the request against its campaign, and the
// Idempotency-Key with it, so that one 422 names every wrong field.
func validateSubmission(w http.ResponseWriter, req Request, e *entry, idemKey string) (Valid, bool) {
	v, err := Validate(req, e.c)
	err = checkClinic(err, &req, e.clinics)
	if len(idemKey) > maxIdemKey || !printable(idemKey) {
		fe, _ := err.(FieldErrors)
		if fe == nil {
			fe = FieldErrors{}
		}
		fe["Idempotency-Key"] = "want at most 128 printable ASCII characters"
		err = fe
	}
	if err != nil {
		invalid(w, err)
		return Valid{}, false
	}
	return v, true
}

// receiptOf gives the submission its receipt: random, or with an
// Idempotency-Key the same for every retry, with the keyed hash of the
// body that tells a retry from a reuse of the key for another intent
// (128 bits: a collision is as hopeless as guessing a receipt). Both are
// made with the campaign's pinned key h, so a retry is the same
// submission across a key rotation.
func (s *Service) receiptOf(h *keys.Hasher, c *campaign.Campaign, v *Valid, idemKey string) (receipt string, bodyKey []byte) {
	if idemKey == "" {
		return s.receipts.Random(), nil
	}
	receipt = Receipts{Hasher: h}.Idempotent(c.ID, v.DeviceID, idemKey)
	bodyKey = h.Raw(keys.PurposeReceipt, "body", v.Provider, v.IdentityToken, v.Request.Birthdate,
		v.Phone, v.Region, v.Clinic, v.Earliest)[:16]
	return receipt, bodyKey
}

// intentOf is the intent published: the phone sealed with the current
// key, the device and the address only as keyed hashes under the
// campaign's pinned key h, so that caps and limits count across a
// rotation.
func (s *Service) intentOf(h *keys.Hasher, c *campaign.Campaign, win campaign.Window, v *Valid, receipt string, addr netip.Addr, now time.Time) prereg.Intent {
	intent := prereg.Intent{
		Receipt:       receipt,
		Campaign:      c.ID,
		Window:        win.ID,
		Provider:      v.Provider,
		IdentityToken: v.IdentityToken,
		Birthdate:     v.Request.Birthdate,
		Phone:         s.cfg.Sealer.Seal([]byte(v.Phone), []byte(c.ID)),
		Region:        v.Region,
		Clinic:        v.Clinic,
		Earliest:      v.Earliest,
		DeviceKey:     h.DeviceKey(c.ID, v.DeviceID),
		ReceivedAt:    now.UTC(),
	}
	if addr.IsValid() {
		intent.AddrKey = h.Sum(keys.PurposeAddr, c.ID, AddrKey(addr, s.cfg.IPv6Prefix))
	}
	return intent
}

// publishIntent appends the intent to its shard's subject, de-duplicated
// by receipt, and waits for the acknowledgement; a failure sheds.
func (s *Service) publishIntent(w http.ResponseWriter, c *campaign.Campaign, intent *prereg.Intent) bool {
	data, err := stream.Encode(*intent)
	if err != nil {
		// A prereg.Intent of strings always encodes; this is unreachable.
		s.shed(w, shedPublish)
		return false
	}
	msg := nats.NewMsg(stream.SubmittedSubject(prereg.Shard(intent.Receipt, c.Shards)))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, intent.Receipt)
	if _, err := s.publish(msg); err != nil {
		var se *errShed
		reason := shedPublish
		if errors.As(err, &se) {
			reason = se.reason
		}
		if reason == shedPublish {
			s.log.Warn("publish failed", slog.String("campaign", c.ID), slog.Any("err", err))
		}
		s.shed(w, reason)
		return false
	}
	return true
}

// firstBody records bodyKey as the body of receipt's first submission,
// or finds the one recorded, in the stream.ReceiptBodies bucket that
// every replica shares: the same body is a retry, to be published again
// (the stream or dedupe drops the copy), another body a reuse of the
// Idempotency-Key, refused 422 before anything reaches the stream. The
// entry is created once and outlives the campaign, so the answer is the
// same after the stream's duplicate window and after verify consumed the
// first message.
func (s *Service) firstBody(ctx context.Context, w http.ResponseWriter, receipt string, bodyKey []byte) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	_, err := s.bodies.Create(ctx, receipt, bodyKey)
	if err == nil {
		return true
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		var e jetstream.KeyValueEntry
		if e, err = s.bodies.Get(ctx, receipt); err == nil {
			if !bytes.Equal(e.Value(), bodyKey) {
				httpapi.WriteError(w, httpapi.CodeIdempotencyKeyReused, nil)
				return false
			}
			return true
		}
	}
	s.log.Warn("record the first body of an idempotency key", slog.Any("err", err))
	s.shed(w, shedIdempotency)
	return false
}

// nextWindow is the next_window of a 403.
type nextWindow struct {
	ID     string    `json:"id"`
	Opens  time.Time `json:"opens"`
	Closes time.Time `json:"closes"`
	Digits []int     `json:"digits"`
}

func (s *Service) windowClosed(w http.ResponseWriter, c *campaign.Campaign, birth, now time.Time) {
	extra := map[string]any{"digit": campaign.Digit(birth), "next_window": nil}
	if nw, ok := c.NextWindow(birth, now); ok {
		v := viewWindow(nw, cmp.Or(c.Location, time.UTC))
		extra["next_window"] = nextWindow{ID: v.ID, Opens: v.Opens, Closes: v.Closes, Digits: v.Digits}
	}
	httpapi.WriteError(w, httpapi.CodeWindowClosed, extra)
}

func (s *Service) serveCampaign(w http.ResponseWriter, r *http.Request) {
	e, ok := s.campaign(w, r.PathValue("id"))
	if !ok {
		return
	}
	h := w.Header()
	h.Set("ETag", e.etag)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(max(1, int(s.cfg.Refresh/time.Second))))
	h.Set("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, e.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(e.json)))
	_, _ = w.Write(e.json)
}

func etagMatches(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || part == etag || part == "W/"+etag {
			return true
		}
	}
	return false
}
