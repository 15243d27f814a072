package dedupe

import (
	"cmp"
	"context"
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
	"github.com/prereg/prereg/stream"
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
	// MaxDeliver is how often a message is tried before it ends as
	// rejected/unprocessable (10).
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

	campaigns *campaign.Cache

	cancel context.CancelFunc
	iter   jetstream.MessagesContext
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
	campaigns, err := campaign.NewCache(campaign.CacheConfig{Source: campaign.SourceFunc(cfg.Campaigns.Get), TTL: cfg.CampaignTTL, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	return &Worker{
		cfg:       cfg,
		log:       cfg.Logger,
		filters:   NewFilters(cfg.BloomFPRate),
		metrics:   m,
		campaigns: campaigns,
	}, nil
}

// Filters are the worker's Bloom filters (for benchmarks and tests).
func (w *Worker) Filters() *Filters { return w.filters }

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
	cons, err := w.cfg.JetStream.CreateOrUpdateConsumer(ctx, stream.Verified, jetstream.ConsumerConfig{
		Durable:        w.cfg.Durable,
		Description:    "dedupe: verified outcomes to decisions",
		FilterSubjects: FilterSubjects(w.cfg.Shards),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.cfg.AckWait,
		MaxDeliver:     w.cfg.MaxDeliver,
		MaxAckPending:  max(4*w.cfg.BatchSize, 1000),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("dedupe: declare consumer %s: %w", w.cfg.Durable, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * w.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("dedupe: consume: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel, w.iter, w.done = cancel, iter, make(chan struct{})
	go w.loop(runCtx)
	return nil
}

// Stop stops consuming and waits for the batch in flight to be decided
// and acknowledged. It is safe to call more than once.
func (w *Worker) Stop() {
	w.once.Do(func() {
		if w.iter == nil {
			return
		}
		w.iter.Stop()
		<-w.done
		w.cancel()
	})
}

func (w *Worker) loop(ctx context.Context) {
	defer close(w.done)
	for {
		batch, err := w.collect()
		if len(batch) > 0 {
			w.handle(ctx, batch)
		}
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				w.log.Error("dedupe: consume", slog.Any("err", err))
			}
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
		m, err := w.iter.Next(jetstream.NextMaxWait(wait))
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

// handle decides one batch and acknowledges it. When the batch as a whole
// fails, each message is retried alone, so that one bad message does not
// hold back the others.
func (w *Worker) handle(ctx context.Context, msgs []jetstream.Msg) {
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		it, err := w.parse(ctx, m)
		if err != nil {
			w.giveUp(m, err)
			continue
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return
	}
	if err := w.decide(ctx, items); err == nil {
		w.settle(items)
		return
	} else if len(items) == 1 {
		w.retryOrReject(ctx, items[0], err)
		return
	} else {
		w.log.Warn("dedupe: batch failed, deciding its messages one by one", slog.Int("size", len(items)), slog.Any("err", err))
	}
	for _, it := range items {
		one := []*item{it}
		if err := w.decide(ctx, one); err != nil {
			w.retryOrReject(ctx, it, err)
			continue
		}
		w.settle(one)
	}
}

// parse decodes a message into an item.
func (w *Worker) parse(ctx context.Context, m jetstream.Msg) (*item, error) {
	it := &item{msg: m}
	if err := stream.Decode(m.Data(), &it.o); err != nil {
		return nil, fmt.Errorf("decode outcome: %w", err)
	}
	shard, err := stream.ShardOf(m.Subject())
	if err != nil {
		return nil, err
	}
	it.shard = shard
	if md, err := m.Metadata(); err == nil {
		it.delivered = md.NumDelivered
		it.last = md.NumDelivered >= uint64(w.cfg.MaxDeliver)
	}
	c, err := w.campaign(ctx, it.o.Campaign)
	if err != nil {
		return nil, err
	}
	it.camp = c
	return it, nil
}

// giveUp handles a message that cannot become an item (undecodable, or
// for a campaign that is not loaded): retried until MaxDeliver, then
// terminated and logged without its content.
func (w *Worker) giveUp(m jetstream.Msg, err error) {
	md, mdErr := m.Metadata()
	if mdErr == nil && md.NumDelivered < uint64(w.cfg.MaxDeliver) && !isPermanent(err) {
		_ = m.NakWithDelay(w.backoff(md.NumDelivered))
		return
	}
	w.metrics.poison.Inc()
	var seq uint64
	if md != nil {
		seq = md.Sequence.Stream
	}
	w.log.Error("dedupe: message terminated", slog.Uint64("stream_seq", seq), slog.String("subject", m.Subject()), slog.Any("err", err))
	_ = m.TermWithReason("dedupe: " + err.Error())
}

func isPermanent(err error) bool {
	return errors.Is(err, stream.ErrMalformed)
}

// retryOrReject handles a message whose decision failed alone: NAK with a
// delay, or after MaxDeliver a rejected/unprocessable decision.
func (w *Worker) retryOrReject(ctx context.Context, it *item, err error) {
	if !it.last {
		w.log.Warn("dedupe: decision failed, retrying later", slog.Int("shard", it.shard), slog.Any("err", err))
		_ = it.msg.NakWithDelay(w.backoff(it.delivered))
		return
	}
	it.o.Verdict, it.o.Reason = prereg.VerdictRejected, prereg.ReasonUnprocessable
	if err2 := w.decide(ctx, []*item{it}); err2 != nil {
		w.giveUp(it.msg, fmt.Errorf("record unprocessable: %w (after %w)", err2, err))
		return
	}
	w.settle([]*item{it})
}

// backoff is the NAK delay after the n-th delivery: doubling from
// RetryDelay up to AckWait, so that the deliveries left before MaxDeliver
// outlast a crashed worker's unacknowledged batch (redelivered after
// AckWait) that a waiting message may depend on.
func (w *Worker) backoff(n uint64) time.Duration {
	d := w.cfg.RetryDelay
	for i := uint64(1); i < n && d < w.cfg.AckWait; i++ {
		d *= 2
	}
	return min(d, w.cfg.AckWait)
}

// settle acknowledges decided messages and NAKs those that must wait.
func (w *Worker) settle(items []*item) {
	for _, it := range items {
		if it.msg == nil {
			continue
		}
		if it.wait {
			_ = it.msg.NakWithDelay(w.backoff(it.delivered))
			continue
		}
		_ = it.msg.Ack()
	}
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
