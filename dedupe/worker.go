package dedupe

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/worker"
)

// Campaigns gives the worker the campaigns it decides for.
type Campaigns interface {
	Get(ctx context.Context, id string) (*campaign.Campaign, error)
	List(ctx context.Context) ([]*campaign.Campaign, time.Time, error)
}

// Config configures a Worker. Store, JetStream and Campaigns are required.
type Config struct {
	Store     Store
	JetStream jetstream.JetStream
	Campaigns Campaigns
	// Shards this worker owns; nil owns them all. Several workers (in one
	// process or several) split the shards without overlap.
	Shards []int
	// Durable names the consumer; default "dedupe" plus the shard set.
	Durable string
	// BatchSize is the most outcomes decided in one transaction (1000).
	BatchSize int
	// MaxDeliver is how often a message is tried, with the database
	// answering, before it ends as rejected/unprocessable (10). Tries
	// that meet an unavailable database or JetStream do not count: the
	// worker waits those out.
	MaxDeliver int
	// AckWait is how long a batch may take before JetStream redelivers it
	// (60s).
	AckWait time.Duration
	// RetryDelay is the NAK delay of a message that must wait (1s).
	RetryDelay time.Duration
	// BloomFPRate overrides the campaigns' Bloom false-positive rate.
	BloomFPRate float64
	// CampaignTTL is how long a campaign is cached (30s).
	CampaignTTL time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
	// Registerer takes the worker's metrics; none when nil.
	Registerer prometheus.Registerer
	// DeadLetters records a message before it is terminated undecided;
	// when nil such a message is terminated with a log line only.
	DeadLetters DeadLetters
	// Requests applies the changes and cancellations asked for the
	// submissions of each committed batch (requests.go); none when nil.
	Requests Requests
}

func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, 1000)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, 10)
	c.AckWait = cmp.Or(c.AckWait, 60*time.Second)
	c.RetryDelay = cmp.Or(c.RetryDelay, time.Second)
	c.CampaignTTL = cmp.Or(c.CampaignTTL, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Durable == "" {
		c.Durable = DurableName(c.Shards)
	}
	return c
}

// DurableName is the default consumer name for a shard set: "dedupe" for
// all shards, else "dedupe-0-1-2".
func DurableName(shards []int) string {
	if shards == nil {
		return "dedupe"
	}
	parts := make([]string, len(shards))
	for i, s := range shards {
		parts[i] = strconv.Itoa(s)
	}
	return "dedupe-" + strings.Join(parts, "-")
}

// FilterSubjects are the subjects of a shard set.
func FilterSubjects(shards []int) []string {
	if shards == nil {
		return []string{prereg.SubjectVerified + ".>"}
	}
	out := make([]string, len(shards))
	for i, s := range shards {
		out[i] = stream.VerifiedSubject(s)
	}
	return out
}

// Worker consumes verified outcomes of its shards and decides them in
// batches. Start it once; Stop waits for the batch in flight.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	filters *Filters
	metrics *metrics
	health  *worker.Health
	dead    *prometheus.CounterVec

	campaigns *campaign.Cache

	// tries counts, per stream sequence, the times a message was tried
	// with the database answering: a data failure, or a wait for the
	// submission a claim was seen with. Deliveries caused by an outage do
	// not count. Only the loop goroutine uses it.
	tries map[uint64]int

	cancel context.CancelFunc
	feed   *stream.Feed
	quit   chan struct{} // closed when Stop begins: ends a wait
	done   chan struct{}
	once   sync.Once
}

// New validates the configuration and returns a worker.
func New(cfg Config) (*Worker, error) {
	if cfg.Store == nil || cfg.JetStream == nil || cfg.Campaigns == nil {
		return nil, errors.New("dedupe: Store, JetStream and Campaigns are required")
	}
	cfg = cfg.withDefaults()
	seen := map[int]bool{}
	for _, s := range cfg.Shards {
		if s < 0 || s >= campaign.DefaultMaxShards || seen[s] {
			return nil, fmt.Errorf("dedupe: shard %d is out of range or listed twice", s)
		}
		seen[s] = true
	}
	if cfg.Shards != nil {
		cfg.Shards = slices.Sorted(slices.Values(cfg.Shards))
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	dead, err := deadletter.Counter(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	campaigns, err := campaign.NewCache(campaign.CacheConfig{Source: campaign.SourceFunc(cfg.Campaigns.Get), TTL: cfg.CampaignTTL, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	return &Worker{
		cfg:       cfg,
		log:       cfg.Logger,
		filters:   NewFilters(cfg.BloomFPRate),
		metrics:   m,
		dead:      dead,
		health:    worker.NewHealth(cfg.Durable, cfg.Logger, cfg.Now),
		campaigns: campaigns,
		tries:     map[uint64]int{},
		quit:      make(chan struct{}),
	}, nil
}

// Filters are the worker's Bloom filters (for benchmarks and tests).
func (w *Worker) Filters() *Filters { return w.filters }

// State is the worker's state for /readyz: running, waiting on PostgreSQL
// or JetStream, or stopped.
func (w *Worker) State() worker.State { return w.health.State() }

// ConsumerConfig is the declaration of a worker's durable consumer.
// MaxDeliver is unlimited: an outage redelivers messages without their
// being to blame, so the worker counts a message's own failures itself
// (Config.MaxDeliver) and JetStream never drops one undecided.
func (w *Worker) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        w.cfg.Durable,
		Description:    "dedupe: verified outcomes to decisions",
		FilterSubjects: FilterSubjects(w.cfg.Shards),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  max(4*w.cfg.BatchSize, 1000),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Start rebuilds the Bloom filters of every loaded campaign from the
// database, declares the durable consumer and starts consuming.
func (w *Worker) Start(ctx context.Context) error {
	cs, _, err := w.cfg.Campaigns.List(ctx)
	if err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	for _, c := range cs {
		start := time.Now()
		if err := w.filters.Rebuild(ctx, w.cfg.Store, c, w.cfg.Shards); err != nil {
			return fmt.Errorf("dedupe: %w", err)
		}
		w.campaigns.Put(c)
		w.log.Info("bloom filters rebuilt", slog.String("campaign", c.ID), slog.Duration("took", time.Since(start)), slog.Int("bytes", w.filters.Bytes()))
	}
	feed, err := stream.OpenFeed(ctx, stream.FeedConfig{
		JetStream: w.cfg.JetStream,
		Stream:    stream.Verified,
		Consumer:  w.ConsumerConfig(),
		Pull:      []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(2 * w.cfg.BatchSize)},
		Health:    w.health,
	})
	if err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel, w.feed, w.done = cancel, feed, make(chan struct{})
	w.health.Running()
	go w.loop(runCtx)
	return nil
}

// Stop stops consuming and waits for the batch in flight to be decided
// and acknowledged; a batch waiting for the database is put back instead.
// It is safe to call more than once.
func (w *Worker) Stop() {
	w.once.Do(func() {
		close(w.quit)
		if w.feed == nil {
			return
		}
		w.feed.Stop()
		<-w.done
		w.cancel()
	})
}

func (w *Worker) loop(ctx context.Context) {
	defer close(w.done)
	defer w.health.Stopped()
	for {
		batch, err := w.collect()
		if len(batch) > 0 {
			w.handle(ctx, batch)
		}
		if err != nil {
			// The feed replaces a failed iterator itself: an error here
			// means it was stopped.
			return
		}
	}
}

// collect waits for a first message, then takes what else is already
// buffered, up to a batch.
func (w *Worker) collect() ([]jetstream.Msg, error) {
	var batch []jetstream.Msg
	for len(batch) < w.cfg.BatchSize {
		wait := 2 * time.Millisecond
		if len(batch) == 0 {
			wait = 500 * time.Millisecond
		}
		m, err := w.feed.Next(wait)
		if errors.Is(err, nats.ErrTimeout) {
			if len(batch) == 0 {
				continue
			}
			return batch, nil
		}
		if err != nil {
			return batch, err
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// handle decides one batch and acknowledges it. Messages that meet an
// unavailable database are held (their AckWait renewed) and tried again
// once it answers, for as long as that takes: an outage costs no message
// an attempt. Stop puts them back instead.
func (w *Worker) handle(ctx context.Context, msgs []jetstream.Msg) {
	for attempt := 1; ; attempt++ {
		held, err := w.try(ctx, msgs)
		if len(held) == 0 {
			w.health.Up(worker.PostgreSQL)
			return
		}
		w.health.Down(worker.PostgreSQL, err)
		if !w.waitOut(ctx, held, attempt) {
			for _, m := range held {
				_ = m.Nak()
			}
			return
		}
		msgs = held
	}
}

// try decides what it can of a batch and returns the messages that met an
// unavailable dependency, with the error. When the batch as a whole fails
// for a reason of its own, each message is retried alone, so that one
// bad message does not hold back the others.
func (w *Worker) try(ctx context.Context, msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	var held []jetstream.Msg
	var heldErr error
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		it, err := w.parse(ctx, m)
		switch {
		case err == nil:
			items = append(items, it)
		case worker.Unavailable(err):
			held, heldErr = append(held, m), err
		default:
			if err := w.giveUp(ctx, m, err); err != nil {
				held, heldErr = append(held, m), err
			}
		}
	}
	if len(items) == 0 {
		return held, heldErr
	}
	err := w.decide(ctx, items)
	if err == nil {
		err = w.honourRequests(ctx, items)
	}
	switch {
	case err == nil:
		w.settle(items)
		return held, heldErr
	case worker.Unavailable(err):
		for _, it := range items {
			held = append(held, it.msg)
		}
		return held, err
	case len(items) > 1:
		w.log.Warn("dedupe: batch failed, deciding its messages one by one", slog.Int("size", len(items)), slog.Any("err", err))
	}
	for _, it := range items {
		one := []*item{it}
		err := w.decide(ctx, one)
		if err == nil {
			err = w.honourRequests(ctx, one)
		}
		switch {
		case err == nil:
			w.settle(one)
		case worker.Unavailable(err):
			held, heldErr = append(held, it.msg), err
		default:
			if err := w.retryOrReject(ctx, it, err); err != nil {
				held, heldErr = append(held, it.msg), err
			}
		}
	}
	return held, heldErr
}

// waitOut waits before messages held by an outage are tried again: a
// capped full-jitter backoff, then until the database answers a probe. It
// keeps the messages in progress meanwhile, so that JetStream does not
// redeliver them. It returns false when the worker is stopping.
func (w *Worker) waitOut(ctx context.Context, held []jetstream.Msg, attempt int) bool {
	touch := time.NewTicker(max(w.cfg.AckWait/3, 10*time.Millisecond))
	defer touch.Stop()
	inProgress := func() {
		for _, m := range held {
			_ = m.InProgress()
		}
	}
	inProgress()
	pause := time.NewTimer(worker.Backoff(attempt, w.cfg.RetryDelay, maxOutageWait))
	defer pause.Stop()
	for {
		select {
		case <-w.quit:
			return false
		case <-touch.C:
			inProgress()
			continue
		case <-pause.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.cfg.Store.Decide(pctx, func(Tx) error { return nil })
		cancel()
		if err == nil {
			return true
		}
		w.health.Down(worker.PostgreSQL, err)
		attempt++
		pause.Reset(worker.Backoff(attempt, w.cfg.RetryDelay, maxOutageWait))
	}
}

// maxOutageWait caps the wait between probes of a database that is down.
const maxOutageWait = 10 * time.Second

// parse decodes a message into an item. An outcome that does not decode
// becomes a rejected/unprocessable item when its receipt and campaign can
// be told (the Nats-Msg-Id header names the receipt).
func (w *Worker) parse(ctx context.Context, m jetstream.Msg) (*item, error) {
	it := &item{msg: m}
	shard, err := stream.ShardOf(m.Subject())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", stream.ErrMalformed, err)
	}
	it.shard = shard
	seq := streamSeq(m)
	it.last = w.tries[seq]+1 >= w.cfg.MaxDeliver
	if err := stream.Decode(m.Data(), &it.o); err != nil {
		if !w.unreadable(m, &it.o) {
			return nil, fmt.Errorf("decode outcome: %w", err)
		}
		w.log.Warn("dedupe: undecodable outcome, deciding it unprocessable", slog.Uint64("stream_seq", seq), slog.String("subject", m.Subject()), slog.Any("err", err))
	}
	if it.o.Campaign == "" {
		// No campaign will ever be loaded under no name: a dead letter
		// now, not after the tries meant for a campaign still to load.
		return nil, fmt.Errorf("%w: the outcome names no campaign", stream.ErrMalformed)
	}
	c, err := w.campaign(ctx, it.o.Campaign)
	if err != nil {
		return nil, err
	}
	it.camp = c
	return it, nil
}

// unreadable turns what can be read of an undecodable outcome into a
// rejected/unprocessable one. Verify always sets Nats-Msg-Id to the
// receipt, so the header names the submission even when the body cannot
// be read. It reports false when receipt or campaign are unknown: nothing
// can be recorded then.
func (w *Worker) unreadable(m jetstream.Msg, o *prereg.Outcome) bool {
	var partial struct {
		Receipt    string    `json:"receipt"`
		Campaign   string    `json:"campaign"`
		Window     string    `json:"window"`
		ReceivedAt time.Time `json:"received_at"`
	}
	_ = json.Unmarshal(m.Data(), &partial)
	*o = prereg.Outcome{
		Receipt:    cmp.Or(m.Headers().Get(jetstream.MsgIDHeader), partial.Receipt),
		Campaign:   partial.Campaign,
		Window:     partial.Window,
		ReceivedAt: partial.ReceivedAt,
		Verdict:    prereg.VerdictRejected,
		Reason:     prereg.ReasonUnprocessable,
	}
	return o.Receipt != "" && o.Campaign != ""
}

// giveUp handles a message that cannot become an item for a reason of its
// own (undecodable without receipt or campaign, or for a campaign that is
// not loaded): retried until MaxDeliver tries, then recorded as a dead
// letter, terminated and logged without its content. No decision can be
// recorded for it: there is no campaign to record it in. It returns an
// error when the dead letter could not be recorded for want of the
// database: the message waits.
func (w *Worker) giveUp(ctx context.Context, m jetstream.Msg, err error) error {
	seq := streamSeq(m)
	w.tries[seq]++
	if w.tries[seq] < w.cfg.MaxDeliver && !isPermanent(err) {
		_ = m.NakWithDelay(w.backoff(w.tries[seq]))
		return nil
	}
	if ok, derr := w.deadLetter(ctx, m, giveUpReason(m, err), err); !ok {
		return derr
	}
	delete(w.tries, seq)
	w.metrics.poison.Inc()
	w.log.Error("dedupe: message terminated", slog.Uint64("stream_seq", seq), slog.String("subject", m.Subject()), slog.Any("err", err))
	_ = m.TermWithReason("dedupe: " + err.Error())
	return nil
}

func isPermanent(err error) bool {
	return errors.Is(err, stream.ErrMalformed)
}

// retryOrReject handles a message whose decision failed alone for a
// reason of its own: NAK with a delay, or after MaxDeliver tries a
// rejected/unprocessable decision. It returns an error when that decision
// could not be recorded for want of the database: the message waits.
func (w *Worker) retryOrReject(ctx context.Context, it *item, err error) error {
	seq := streamSeq(it.msg)
	if !it.last {
		w.tries[seq]++
		w.log.Warn("dedupe: decision failed, retrying later", slog.Int("shard", it.shard), slog.Uint64("stream_seq", seq), slog.Any("err", err))
		_ = it.msg.NakWithDelay(w.backoff(w.tries[seq]))
		return nil
	}
	it.o.Verdict, it.o.Reason = prereg.VerdictRejected, prereg.ReasonUnprocessable
	err2 := w.decide(ctx, []*item{it})
	switch {
	case err2 == nil:
		w.log.Warn("dedupe: outcome decided unprocessable", slog.Int("shard", it.shard), slog.Uint64("stream_seq", seq), slog.Any("err", err))
		w.settle([]*item{it})
		return nil
	case worker.Unavailable(err2):
		return err2
	}
	if ok, derr := w.deadLetter(ctx, it.msg, deadletter.ReasonUnrecordable, err2); !ok {
		return derr
	}
	delete(w.tries, seq)
	w.metrics.poison.Inc()
	w.log.Error("dedupe: message terminated", slog.Uint64("stream_seq", seq), slog.String("subject", it.msg.Subject()),
		slog.Any("err", fmt.Errorf("record unprocessable: %w (after %w)", err2, err)))
	_ = it.msg.TermWithReason("dedupe: record unprocessable: " + err2.Error())
	return nil
}

// backoff is the NAK delay after a message's n-th try: capped full jitter
// from RetryDelay up to AckWait.
func (w *Worker) backoff(n int) time.Duration {
	return worker.Backoff(n, w.cfg.RetryDelay, w.cfg.AckWait)
}

// settle acknowledges decided messages and NAKs those that must wait.
func (w *Worker) settle(items []*item) {
	for _, it := range items {
		if it.msg == nil {
			continue
		}
		seq := streamSeq(it.msg)
		if it.wait {
			w.tries[seq]++
			_ = it.msg.NakWithDelay(w.backoff(w.tries[seq]))
			continue
		}
		delete(w.tries, seq)
		_ = it.msg.Ack()
	}
	// A message decided by another process never comes back to have its
	// count removed; a restart forgets the counts anyway.
	if len(w.tries) > maxTracked {
		clear(w.tries)
	}
}

// maxTracked bounds the per-message try counts kept in memory.
const maxTracked = 100_000

// streamSeq names a message in logs and counts without its content.
func streamSeq(m jetstream.Msg) uint64 {
	if md, err := m.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}

// campaign returns the campaign from the cache, building its filters the
// first time it is seen.
func (w *Worker) campaign(ctx context.Context, id string) (*campaign.Campaign, error) {
	c, err := w.campaigns.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !w.filters.Has(id) {
		if err := w.filters.Rebuild(ctx, w.cfg.Store, c, w.cfg.Shards); err != nil {
			return nil, err
		}
	}
	return c, nil
}
