package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/worker"
)

// Verifier is the verify stage: Start it once, Stop it once.
type Verifier struct {
	cfg     Config
	set     Settings
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
	js      jetstream.JetStream
	kv      *buckets
	camps   *campaign.Cache
	claimMu keyedMutex
	// health is the stage's own: what keeps it from making progress
	// (JetStream for the consumer and the outcomes, PostgreSQL for a
	// campaign it has no copy of), reported to /readyz. aside logs the
	// trouble of what only saves work (the KV caches, the registration
	// look-up, the health writes) once per state change, and is not.
	health *worker.Health
	aside  *worker.Health
	spend  *spendGuard
	// keys is raised when a phone or a campaign names a key this process
	// lacks: the dispatcher then stops taking messages (keyMissing).
	keys *keys.Alarm

	mu    sync.Mutex
	pools map[string]*pool

	// Capacity accounting: the dispatcher takes a message from the
	// consumer only while fewer than capacity (the sum of every pool's
	// queue and workers) are held, so a busy provider pushes back on the
	// consumer instead of being fed messages it would NAK at once.
	inFlight atomic.Int64
	capacity atomic.Int64
	freed    chan struct{}

	workCtx    context.Context // provider calls, publishes, KV: cancelled last
	cancelWork context.CancelFunc
	feed       *stream.Feed
	stopping   atomic.Bool
	dispatched chan struct{} // closed when the dispatcher has returned
	quit       chan struct{} // closed when Stop begins
	workers    sync.WaitGroup
	background sync.WaitGroup
	stopOnce   sync.Once
	started    atomic.Bool
}

// New validates the configuration and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.JetStream == nil || cfg.Campaigns == nil || cfg.Hasher == nil || cfg.Sealer == nil {
		return nil, errors.New("verify: JetStream, Campaigns, Hasher and Sealer are required")
	}
	set := cfg.Settings.withDefaults()
	if err := set.validate(); err != nil {
		return nil, err
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	health := worker.NewHealth(ConsumerName, log, now)
	// A campaign is read for every message: the cache asks the store once
	// per CampaignTTL and rides out a short outage on the last good copy.
	camps, err := campaign.NewCache(campaign.CacheConfig{Source: campaign.SourceFunc(cfg.Campaigns.Get), TTL: set.CampaignTTL, Now: now})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return &Verifier{
		cfg:        cfg,
		set:        set,
		log:        log,
		health:     health,
		aside:      worker.NewHealth(ConsumerName+" (caches)", log, now),
		now:        now,
		m:          m,
		js:         cfg.JetStream,
		camps:      camps,
		spend:      newSpendGuard(set.ProviderCallsPerPrefix, set.ProviderCallsPerCampaign),
		keys:       &keys.Alarm{Stage: "verify", Logger: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))},
		pools:      map[string]*pool{},
		freed:      make(chan struct{}, 1),
		dispatched: make(chan struct{}),
		quit:       make(chan struct{}),
	}, nil
}

// ConsumerConfig is the declaration of the shared "verify" consumer.
func ConsumerConfig(s Settings) jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "verify: exchanges identity tokens with the providers",
		FilterSubject: prereg.SubjectSubmitted + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		// Unlimited: verify counts the failures a message is to blame for
		// itself (see the package doc), so an outage never exhausts it.
		MaxDeliver:    -1,
		MaxAckPending: s.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Start declares the consumer and the KV buckets and starts consuming.
func (v *Verifier) Start(ctx context.Context) error {
	if !v.started.CompareAndSwap(false, true) {
		return errors.New("verify: started twice")
	}
	// The buckets' streams may still be electing their leaders when every
	// process of a cluster starts at once.
	var kv *buckets
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := stream.WhenReady(openCtx, v.log, "open the verify buckets", func(ctx context.Context) (err error) {
		kv, err = openBuckets(ctx, v.js, v.set)
		return err
	})
	cancel()
	if err != nil {
		return err
	}
	v.kv = kv
	feed, err := stream.OpenFeed(ctx, stream.FeedConfig{
		JetStream: v.js,
		Stream:    stream.Submitted,
		Consumer:  ConsumerConfig(v.set),
		Pull:      []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(v.set.Batch)},
		Health:    v.health,
		RetryBase: v.set.BackoffBase,
		RetryCap:  v.set.BackoffCap,
	})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	v.feed = feed
	v.health.Running()
	// Work outlives ctx by design: Stop lets it finish, then cancels it.
	v.workCtx, v.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	go v.dispatch()
	v.background.Add(1)
	go v.reportHealth()
	go func() {
		select {
		case <-ctx.Done():
			v.Stop()
		case <-v.quit:
		}
	}()
	return nil
}

// Stop stops taking messages, lets the work in flight finish (up to
// StopTimeout; what is cut short is redelivered later) and returns when
// every worker has returned. Safe to call more than once.
func (v *Verifier) Stop() {
	if !v.started.Load() || v.feed == nil { // never started, or Start failed
		return
	}
	v.stopOnce.Do(func() {
		close(v.quit)
		v.stopping.Store(true)
		v.feed.Drain()
		<-v.dispatched
		v.mu.Lock()
		for _, p := range v.pools {
			close(p.queue)
		}
		v.mu.Unlock()
		done := make(chan struct{})
		go func() { v.workers.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(v.set.StopTimeout):
			v.log.Warn("verify: stop timed out, cancelling work in flight")
			v.cancelWork()
			<-done
		}
		v.cancelWork()
		v.background.Wait()
		v.health.Stopped()
	})
}

// The dependencies verify tells apart in its logs and /readyz: each is
// down or up by the same operation, so that one that fails while another
// on the same server works is not reported down and up by turns.
const (
	depOutcomes      = "jetstream: publish outcomes"
	depAcks          = "jetstream: acknowledgements"
	depAttempts      = "jetstream: kv " + BucketAttempts
	depTokensRead    = "jetstream: kv " + BucketTokens + " read"
	depTokensWrite   = "jetstream: kv " + BucketTokens + " write"
	depClaimsRead    = "jetstream: kv " + BucketClaims + " read"
	depClaimsWrite   = "jetstream: kv " + BucketClaims + " write"
	depHealthWrite   = "jetstream: kv " + prereg.ProviderHealthBucket + " write"
	depRegistrations = "postgresql: registrations"
	depCampaigns     = "postgresql: campaigns"
)

// note tells h how an operation on a dependency went.
func (v *Verifier) note(h *worker.Health, dep string, err error) {
	if err != nil {
		h.Down(dep, err)
		return
	}
	h.Up(dep)
}

// State is the stage's state for /readyz: running, waiting on JetStream
// or PostgreSQL, or stopped.
func (v *Verifier) State() worker.State { return v.health.State() }

// dispatch hands each message to the pool of its provider.
func (v *Verifier) dispatch() {
	defer close(v.dispatched)
	for {
		for !v.stopping.Load() && v.inFlight.Load() >= v.capacity.Load() && v.capacity.Load() > 0 {
			select {
			case <-v.freed:
			case <-time.After(50 * time.Millisecond):
			}
		}
		msg, err := v.feed.Next(0)
		if err != nil {
			// The feed replaces a failed iterator itself: an error here
			// means Stop, or a missing key (keyMissing), drained it.
			return
		}
		if v.stopping.Load() {
			// Drained after Stop: hand it back at once for another process.
			_ = msg.Nak()
			v.m.naks.WithLabelValues("shutdown").Inc()
			continue
		}
		if v.keys.Raised() {
			// Drained after a missing key: the same.
			_ = msg.Nak()
			v.m.naks.WithLabelValues("key_missing").Inc()
			continue
		}
		v.route(msg)
	}
}

// Ready is an error while the stage is stopped for a missing key.
func (v *Verifier) Ready(context.Context) error { return v.keys.Err() }

// keyMissing hands a message back at once, uncounted, for a process that
// has the key it needs (err, an unknown key id), raises the alarm and
// stops this process taking messages: a key missing is the operator's
// error, which no message may pay for, and which only a restart with the
// key mends. What the consumer had buffered goes back the same way.
func (v *Verifier) keyMissing(msg jetstream.Msg, err error) {
	v.keys.Raise(err)
	if nerr := msg.Nak(); nerr != nil {
		v.log.Warn("verify: nak", slog.String("cause", "key_missing"), slog.Any("err", nerr))
	}
	v.m.naks.WithLabelValues("key_missing").Inc()
	v.feed.Drain()
}

// job is one message on its way through a pool.
type job struct {
	msg  jetstream.Msg
	in   prereg.Intent
	camp *campaign.Campaign
	pool *pool
	// hasher is the campaign's pinned HMAC key.
	hasher *keys.Hasher
}

func (v *Verifier) route(msg jetstream.Msg) {
	ctx := v.workCtx
	in, err := decodeIntent(msg.Data())
	if err != nil {
		v.unreadable(ctx, msg, in, err)
		return
	}
	camp, err := v.camps.Get(ctx, in.Campaign)
	if notFound := errors.Is(err, prereg.ErrCampaignNotFound); !notFound {
		// The cache rides out a short outage on its last good copy: an
		// error here means there is none, and the campaign's intents wait.
		v.note(v.health, depCampaigns, err)
	}
	if err != nil {
		v.retry(ctx, job{msg: msg, in: in}, errors.Is(err, prereg.ErrCampaignNotFound), "campaign", err)
		return
	}
	hasher, err := v.cfg.Hasher.Pinned(camp.HMACKey)
	if err != nil {
		v.keyMissing(msg, err)
		return
	}
	// Start every provider's pool of the campaign at once: capacity must
	// count them all before one slow provider can fill what there is.
	for _, pr := range camp.Providers {
		v.pool(camp.ID, pr)
	}
	prov, ok := camp.Provider(in.Provider)
	if !ok {
		v.retry(ctx, job{msg: msg, in: in, camp: camp, hasher: hasher}, true, "provider", errors.New("the campaign has no such provider"))
		return
	}
	p := v.pool(camp.ID, prov)
	j := job{msg: msg, in: in, camp: camp, pool: p, hasher: hasher}
	v.inFlight.Add(1)
	v.m.inFlight.Inc()
	if v.enqueue(p, j) {
		return
	}
	// This provider's bulkhead stays full while others may have room: put
	// the message back rather than let one slow provider hold everyone.
	v.settled()
	v.nak(msg, "bulkhead_full")
}

// enqueue hands a job to its pool. A full queue is waited on for at most
// bulkheadWait, which a provider that answers in milliseconds fills again
// in time; a pool that made the dispatcher wait in vain is passed over
// without waiting for a while, so a slow provider costs the others
// nothing.
func (v *Verifier) enqueue(p *pool, j job) bool {
	select {
	case p.queue <- j:
		return true
	default:
	}
	if time.Now().UnixNano() < p.saturatedUntil.Load() {
		return false
	}
	t := time.NewTimer(bulkheadWait)
	defer t.Stop()
	select {
	case p.queue <- j:
		return true
	case <-t.C:
		p.saturatedUntil.Store(time.Now().Add(saturatedFor).UnixNano())
		return false
	}
}

// workersPerCall is how many workers a pool runs per call slot of its
// bulkhead. A worker spends as long on JetStream (cache look-ups, the
// publish, the ack: four round trips) as on the call itself when the
// machine is busy; with fewer workers the bulkhead stood two-thirds full
// in `prereg bench verify` (2×: 41 of 64 calls in flight, 4×: 50).
const workersPerCall = 4

const (
	bulkheadWait = 20 * time.Millisecond
	saturatedFor = 100 * time.Millisecond
)

// pool returns the pool of a campaign's provider, starting it on first
// use. A provider's settings are read once per process: a changed URL or
// limit takes effect when verify restarts.
func (v *Verifier) pool(campaignID string, prov campaign.Provider) *pool {
	key := prereg.ProviderHealthKey(campaignID, prov.Name)
	v.mu.Lock()
	defer v.mu.Unlock()
	if p, ok := v.pools[key]; ok {
		return p
	}
	p := newPool(campaignID, prov, v.set.Breaker, v.now, v.isShutdown)
	v.pools[key] = p
	n := max(1, prov.Concurrency)
	workers := workersPerCall * n
	v.capacity.Add(int64(n + workers)) // queue and workers
	for range workers {
		v.workers.Add(1)
		go func() {
			defer v.workers.Done()
			for j := range p.queue {
				v.process(j)
				v.settled()
			}
		}()
	}
	v.background.Add(1)
	go v.watchState(p)
	return p
}

func (v *Verifier) settled() {
	v.inFlight.Add(-1)
	v.m.inFlight.Dec()
	select {
	case v.freed <- struct{}{}:
	default:
	}
}

// isShutdown tells the breaker that an error came from our own shutdown.
func (v *Verifier) isShutdown(err error) bool {
	return errors.Is(err, context.Canceled) && v.workCtx.Err() != nil
}

// backoff is the NAK delay of a message delivered n times: capped full
// jitter, uniform in (0, min(BackoffCap, BackoffBase·2^n)].
func (v *Verifier) backoff(n uint64) time.Duration {
	return worker.Backoff(int(min(n, 62))+1, v.set.BackoffBase, v.set.BackoffCap)
}

// nak puts a message back with a backoff delay.
func (v *Verifier) nak(msg jetstream.Msg, cause string) {
	var n uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	v.note(v.health, depAcks, msg.NakWithDelay(v.backoff(n)))
	v.m.naks.WithLabelValues(cause).Inc()
}

// nakFor puts a message back for a fixed delay; it counts as no failure.
func (v *Verifier) nakFor(msg jetstream.Msg, cause string, d time.Duration) {
	v.note(v.health, depAcks, msg.NakWithDelay(d))
	v.m.naks.WithLabelValues(cause).Inc()
}

// deliveries is how often the message has been delivered (1 the first
// time).
func deliveries(msg jetstream.Msg) uint64 {
	if md, err := msg.Metadata(); err == nil {
		return md.NumDelivered
	}
	return 1
}

// watchState writes a pool's health at once when its breaker changes state.
func (v *Verifier) watchState(p *pool) {
	defer v.background.Done()
	for {
		select {
		case <-p.stateChanged:
			v.writeHealth(p)
		case <-v.workCtx.Done():
			return
		}
	}
}

// reportHealth writes every pool's health every HealthEvery.
func (v *Verifier) reportHealth() {
	defer v.background.Done()
	t := time.NewTicker(v.set.HealthEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			v.mu.Lock()
			ps := make([]*pool, 0, len(v.pools))
			for _, p := range v.pools {
				ps = append(ps, p)
			}
			v.mu.Unlock()
			for _, p := range ps {
				v.writeHealth(p)
			}
		case <-v.workCtx.Done():
			return
		}
	}
}

func (v *Verifier) writeHealth(p *pool) {
	h := p.health(v.now())
	state := map[string]float64{"closed": 0, "half-open": 1, "open": 2}[h.State]
	v.m.state.WithLabelValues(p.campaign, p.provider.Name).Set(state)
	v.m.errorRate.WithLabelValues(p.campaign, p.provider.Name).Set(h.ErrorRate)
	ctx, cancel := context.WithTimeout(v.workCtx, 5*time.Second)
	defer cancel()
	if err := putJSON(ctx, v.kv.health, prereg.ProviderHealthKey(p.campaign, p.provider.Name), h); ctx.Err() == nil {
		v.note(v.aside, depHealthWrite, err)
	}
}

// keyedMutex serialises work on one key (a claim) inside this process, so
// that two submissions of the same claim arriving together make one
// provider call, not two: the second finds the first's claim recorded.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
