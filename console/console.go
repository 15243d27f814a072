// Package console is the operators' and auditors' live console at
// GET /admin/: the page (embedded HTML, CSS and script, no build step, no
// outside asset), and the pipeline's samples it plots, taken every few
// seconds from the process's own Prometheus registry, the providers'
// breaker states and the database, and kept in a bounded ring so that a
// console opened now shows the last minutes at once.
//
// The page holds no data: it signs in with a bearer token it keeps in the
// tab's sessionStorage, and reads and acts only through the admin API,
// whose routes check the token's role and write the audit log.
package console

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/stream"
)

// Sample is the pipeline at one moment: every number the console shows,
// and the series its charts plot. Rates are per second since the sample
// before. The intake figures are this process's (its metrics); the lags,
// the providers and the per-campaign counts are the whole deployment's
// (JetStream, the providers' health bucket, PostgreSQL). It holds counts
// only, never personal data.
type Sample struct {
	At time.Time `json:"at"`

	// Submissions answered per second, by HTTP status; shed (503) by
	// reason and rate-limited (429) by limit.
	SubmitsPerS     map[string]float64 `json:"submits_per_s"`
	ShedPerS        map[string]float64 `json:"shed_per_s"`
	RateLimitedPerS map[string]float64 `json:"rate_limited_per_s"`
	// Totals since the process started.
	Accepted    float64 `json:"accepted"`
	Shed        float64 `json:"shed"`
	RateLimited float64 `json:"rate_limited"`

	// Lag of each stage: the oldest intent not yet verified, and the
	// messages waiting for verify (submitted) and dedupe (verified).
	VerifyLagSeconds float64 `json:"verify_lag_seconds"`
	VerifyBacklog    float64 `json:"verify_backlog"`
	DedupeBacklog    float64 `json:"dedupe_backlog"`

	Providers []Provider `json:"providers"`
	// Campaigns and Runs are the database's, as read at CountsAt: this
	// sample's time, or an earlier one on large tables (countsDuty) or
	// while the database cannot be read (Errors says "database"; zero:
	// never read).
	Campaigns map[string]CampaignCount `json:"campaigns"`
	Runs      []Run                    `json:"runs"`
	CountsAt  time.Time                `json:"counts_at"`
	// Errors names what could not be read for this sample (the rest is
	// shown): "database", "providers", "metrics".
	Errors []string `json:"errors,omitempty"`
}

// Provider is one identity provider's breaker, as verify publishes it.
type Provider struct {
	Campaign  string  `json:"campaign"`
	Name      string  `json:"name"`
	State     string  `json:"state"` // closed, half-open, open, unknown
	ErrorRate float64 `json:"error_rate"`
}

// CampaignCount is one campaign's decisions, reviews, SMS and pause as
// the database holds them.
type CampaignCount struct {
	Name string `json:"name"`
	// Windows are the campaign's windows, for the allocation form.
	Windows []Window `json:"windows"`
	// Decisions by kind (registered, duplicate, held, rejected) and by
	// "kind/reason".
	Decisions map[string]int64 `json:"decisions"`
	Reasons   map[string]int64 `json:"reasons"`
	Decided   int64            `json:"decided"`
	// DecidedPerS is decisions written per second.
	DecidedPerS float64 `json:"decided_per_s"`
	HeldPending int64   `json:"held_pending"`
	// Outbox by state (pending, sent, delivered, failed); Backlog is the
	// pending; DeliveredPerS the delivery reports per second.
	Outbox        map[string]int64 `json:"outbox"`
	DeliveredPerS float64          `json:"delivered_per_s"`
	Appointments  int64            `json:"appointments"`
	// Pause is the operator's pause of its intake, while one holds.
	Pause *Pause `json:"pause,omitempty"`
}

// Window is one of a campaign's windows.
type Window struct {
	ID     string    `json:"id"`
	Opens  time.Time `json:"opens"`
	Closes time.Time `json:"closes"`
}

// Pause is a campaign's intake pause.
type Pause struct {
	PausedAt  time.Time  `json:"paused_at"`
	ReopensAt *time.Time `json:"reopens_at"`
	By        string     `json:"paused_by"`
}

// Run is one allocation run and its progress.
type Run struct {
	ID         int64      `json:"id"`
	Campaign   string     `json:"campaign"`
	Window     string     `json:"window"`
	Policy     string     `json:"policy"`
	DryRun     bool       `json:"dry_run"`
	State      string     `json:"state"`
	Total      int        `json:"total"`
	Done       int        `json:"done"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// Counts is what the database says, read once per sample.
type Counts struct {
	Campaigns map[string]CampaignCount
	// Runs are the latest allocation runs, newest first.
	Runs []Run
}

// Store reads the database's part of a sample; postgres.ConsoleStore
// implements it.
type Store interface {
	Counts(ctx context.Context, now time.Time) (Counts, error)
}

// Health reads every provider's breaker state by
// prereg.ProviderHealthKey.
type Health func(ctx context.Context) (map[string]prereg.ProviderHealth, error)

// Defaults of a Sampler: ten minutes of samples two seconds apart.
const (
	DefaultEvery = 2 * time.Second
	DefaultKeep  = 300
)

// Config configures a Sampler. Gatherer and Store are required.
type Config struct {
	Gatherer prometheus.Gatherer
	Store    Store
	Health   Health // nil: no providers shown
	// Every is the time between samples [DefaultEvery]; Keep how many
	// are kept [DefaultKeep].
	Every time.Duration
	Keep  int
	// VerifyConsumer and DedupeConsumers name the stages' durable
	// consumers (verify.ConsumerName; the prefix of dedupe.DurableName):
	// the backlogs are theirs. Empty: every consumer of the stream.
	VerifyConsumer  string
	DedupeConsumers string
	Log             *slog.Logger
	Now             func() time.Time
}

// partTimeout bounds each source of a sample. A slow one delays the next
// sample rather than leaving it empty: under a surge the machine is busy.
const partTimeout = 10 * time.Second

// Sampler takes a Sample every Config.Every and keeps the last
// Config.Keep. It is a service: Start, then Stop.
type Sampler struct {
	cfg Config

	mu   sync.Mutex
	ring []Sample // oldest first, at most cfg.Keep
	// prev holds the counters of the last sample, for the rates.
	prev counters
	// counts is the last reading of the database's counts.
	counts lastCounts
	cancel context.CancelFunc
	done   chan struct{}
}

// counters are the cumulative values rates are computed from.
type counters struct {
	at        time.Time
	submits   map[string]float64
	shed      map[string]float64
	limited   map[string]float64
	countsAt  time.Time // when decided and delivered were read
	decided   map[string]int64
	delivered map[string]int64
}

// lastCounts is the database's counts as last read: when they were last
// tried, how long that took and whether it failed, and the last good
// reading (its time and what the samples show until the next, with their
// rates).
type lastCounts struct {
	tried     time.Time
	took      time.Duration
	failed    bool
	at        time.Time
	campaigns map[string]CampaignCount
	runs      []Run
}

// countsDuty bounds what the console costs PostgreSQL. Its counts group
// the decisions, the outbox and the appointments, tables that grow with
// the campaign: at four million submissions one reading takes a
// PostgreSQL backend a second or more, and at the sampling interval that
// would be a core's share for as long as an admin process runs, watched or
// not. So the counts are read again only once countsDuty times their last
// reading's duration has passed (and not more often than the samples):
// at most a tenth of one backend, however large the tables. In between
// the samples show the last reading, and Sample.CountsAt says when it was
// taken; on small tables that is every sample.
const countsDuty = 10

// New checks the configuration and fills its defaults.
func New(cfg Config) (*Sampler, error) {
	if cfg.Gatherer == nil || cfg.Store == nil {
		return nil, errors.New("console: a metrics gatherer and a store are required")
	}
	cfg.Every = cmp.Or(cfg.Every, DefaultEvery)
	cfg.Keep = cmp.Or(cfg.Keep, DefaultKeep)
	cfg.Log = cmp.Or(cfg.Log, slog.New(slog.DiscardHandler))
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sampler{cfg: cfg}, nil
}

// Start takes the first sample and keeps sampling in the background until
// Stop.
func (s *Sampler) Start(ctx context.Context) error {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	if s.cancel != nil {
		s.mu.Unlock()
		cancel()
		return errors.New("console: already started")
	}
	s.cancel, s.done = cancel, make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.Every)
		defer t.Stop()
		for {
			s.Take(bg)
			select {
			case <-bg.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the sampling; it is idempotent.
func (s *Sampler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Take takes one sample now, keeps it and returns it.
func (s *Sampler) Take(ctx context.Context) Sample {
	// Milliseconds: what ?since= names a sample by.
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	smp := Sample{At: now, Campaigns: map[string]CampaignCount{}}
	cur := counters{at: now, decided: map[string]int64{}, delivered: map[string]int64{}}

	mfs, err := s.cfg.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		smp.Errors = append(smp.Errors, "metrics")
		s.cfg.Log.Warn("console: gather metrics", slog.Any("err", err))
	}
	m := metricIndex(mfs)
	cur.submits = m.sumBy("prereg_intake_requests_total", "status", map[string]string{"route": "submit"})
	cur.shed = m.sumBy("prereg_intake_shed_total", "reason", nil)
	cur.limited = m.sumBy("prereg_intake_rate_limited_total", "limit", nil)
	smp.Accepted = cur.submits["202"]
	smp.Shed, smp.RateLimited = total(cur.shed), total(cur.limited)
	smp.VerifyLagSeconds = m.sum("prereg_stream_oldest_message_age_seconds", map[string]string{"stream": stream.Submitted})
	// Only the stages' durable consumers: a scan such as prereg check's
	// has a consumer of its own whose pending is the whole stream.
	smp.VerifyBacklog = m.backlog(stream.Submitted, s.cfg.VerifyConsumer)
	smp.DedupeBacklog = m.backlog(stream.Verified, s.cfg.DedupeConsumers)

	if s.cfg.Health != nil {
		hctx, cancel := context.WithTimeout(ctx, partTimeout)
		hs, err := s.cfg.Health(hctx)
		cancel()
		if err != nil {
			smp.Errors = append(smp.Errors, "providers")
			s.cfg.Log.Warn("console: provider health", slog.Any("err", err))
		}
		smp.Providers = providers(hs)
	}

	// The database's counts, when they are due (countsDuty).
	s.mu.Lock()
	due := s.counts.tried.IsZero() || now.Sub(s.counts.tried) >= max(s.cfg.Every, countsDuty*s.counts.took)
	s.mu.Unlock()
	var counts Counts
	var took time.Duration
	err = nil // the metrics' error is told above
	if due {
		dctx, cancel := context.WithTimeout(ctx, partTimeout)
		start := s.cfg.Now()
		counts, err = s.cfg.Store.Counts(dctx, now)
		took = s.cfg.Now().Sub(start)
		cancel()
		if err != nil {
			smp.Errors = append(smp.Errors, "database")
			s.cfg.Log.Warn("console: database counts", slog.Any("err", err))
		}
		smp.Runs = counts.Runs
		for id, c := range counts.Campaigns {
			cur.decided[id], cur.delivered[id] = c.Decided, c.Outbox["delivered"]
			smp.Campaigns[id] = c
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.prev
	if dt := now.Sub(prev.at).Seconds(); !prev.at.IsZero() && dt > 0 {
		smp.SubmitsPerS = rates(cur.submits, prev.submits, dt)
		smp.ShedPerS = rates(cur.shed, prev.shed, dt)
		smp.RateLimitedPerS = rates(cur.limited, prev.limited, dt)
	}
	if smp.SubmitsPerS == nil {
		smp.SubmitsPerS, smp.ShedPerS, smp.RateLimitedPerS = map[string]float64{}, map[string]float64{}, map[string]float64{}
	}
	s.prev.at, s.prev.submits, s.prev.shed, s.prev.limited = cur.at, cur.submits, cur.shed, cur.limited
	if due && err == nil {
		// Rates of decisions and reports since the last good reading.
		if dt := now.Sub(prev.countsAt).Seconds(); !prev.countsAt.IsZero() && dt > 0 {
			for id, c := range smp.Campaigns {
				if p, ok := prev.decided[id]; ok {
					c.DecidedPerS = max(0, float64(c.Decided-p)/dt)
				}
				if p, ok := prev.delivered[id]; ok {
					c.DeliveredPerS = max(0, float64(cur.delivered[id]-p)/dt)
				}
				smp.Campaigns[id] = c
			}
		}
		s.prev.countsAt, s.prev.decided, s.prev.delivered = now, cur.decided, cur.delivered
		s.counts = lastCounts{tried: now, took: took, at: now, campaigns: smp.Campaigns, runs: smp.Runs}
		smp.CountsAt = now
	} else {
		// Not due, or failed (tried again after countsDuty times what it
		// took: a timeout's partTimeout): the last good reading, said to
		// be of its time, and the failure while it lasts.
		if due {
			s.counts.tried, s.counts.took, s.counts.failed = now, took, true
		} else if s.counts.failed {
			smp.Errors = append(smp.Errors, "database")
		}
		smp.Campaigns = maps.Clone(s.counts.campaigns)
		smp.Runs = s.counts.runs
		smp.CountsAt = s.counts.at
	}
	if smp.Campaigns == nil {
		smp.Campaigns = map[string]CampaignCount{}
	}
	if smp.Runs == nil {
		smp.Runs = []Run{}
	}
	s.ring = append(s.ring, smp)
	if n := len(s.ring) - s.cfg.Keep; n > 0 {
		s.ring = append(s.ring[:0:0], s.ring[n:]...)
	}
	return smp
}

// Since returns the kept samples taken after t, oldest first.
func (s *Sampler) Since(t time.Time) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, smp := range s.ring {
		if smp.At.After(t) {
			return append([]Sample(nil), s.ring[i:]...)
		}
	}
	return []Sample{}
}

// ServeHTTP answers GET /admin/v1/pipeline?since=: the kept samples
// (taken after since, Unix milliseconds, when given), oldest first, and
// the sampling interval.
func (s *Sampler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"since": "want Unix milliseconds"}})
			return
		}
		since = time.UnixMilli(ms)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"every_seconds": s.cfg.Every.Seconds(),
		"samples":       s.Since(since),
	})
}

// ServeWhoAmI answers GET /admin/v1/whoami: the role and token id of the
// caller's token, for the console to show the actions the role may take.
func ServeWhoAmI(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{
		"role":     string(httpapi.RoleFrom(r.Context())),
		"token_id": httpapi.TokenIDFrom(r.Context()),
	})
}

// metrics indexes gathered metric families by name.
type metrics map[string]*dto.MetricFamily

func metricIndex(mfs []*dto.MetricFamily) metrics {
	m := make(metrics, len(mfs))
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	return m
}

// value is a counter's or gauge's value.
func value(x *dto.Metric) float64 {
	if c := x.GetCounter(); c != nil {
		return c.GetValue()
	}
	return x.GetGauge().GetValue()
}

// matches reports whether x has every label of want.
func matches(x *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range x.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// sum adds up the series of a metric that match the labels.
func (m metrics) sum(name string, want map[string]string) float64 {
	var t float64
	for _, x := range m[name].GetMetric() {
		if matches(x, want) {
			t += value(x)
		}
	}
	return t
}

// backlog is the messages a stage's consumers of a stream have not
// finished: pending and unacknowledged, over the consumers whose name
// starts with prefix.
func (m metrics) backlog(streamName, prefix string) float64 {
	var t float64
	for _, name := range []string{"prereg_consumer_pending_messages", "prereg_consumer_ack_pending_messages"} {
		for _, x := range m[name].GetMetric() {
			var st, consumer string
			for _, lp := range x.GetLabel() {
				switch lp.GetName() {
				case "stream":
					st = lp.GetValue()
				case "consumer":
					consumer = lp.GetValue()
				}
			}
			if st == streamName && strings.HasPrefix(consumer, prefix) {
				t += value(x)
			}
		}
	}
	return t
}

// sumBy adds up the matching series of a metric by one label's value.
func (m metrics) sumBy(name, label string, want map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range m[name].GetMetric() {
		if !matches(x, want) {
			continue
		}
		for _, lp := range x.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += value(x)
			}
		}
	}
	return out
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// rates are the per-second increases from prev to cur; a counter that
// went down (the process restarted) counts from zero.
func rates(cur, prev map[string]float64, dt float64) map[string]float64 {
	out := make(map[string]float64, len(cur))
	for k, v := range cur {
		d := v - prev[k]
		if d < 0 {
			d = v
		}
		out[k] = d / dt
	}
	return out
}

// providers lists the breakers by campaign and name, from keys
// "<campaign>.<provider>" (prereg.ProviderHealthKey).
func providers(hs map[string]prereg.ProviderHealth) []Provider {
	out := make([]Provider, 0, len(hs))
	for key, h := range hs {
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			continue
		}
		out = append(out, Provider{Campaign: key[:i], Name: key[i+1:], State: cmp.Or(h.State, "unknown"), ErrorRate: h.ErrorRate})
	}
	slices.SortFunc(out, func(a, b Provider) int {
		return cmp.Or(strings.Compare(a.Campaign, b.Campaign), strings.Compare(a.Name, b.Name))
	})
	return out
}
