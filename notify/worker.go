package notify

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/collector"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/worker"
)

// Message is one claimed outbox row with what its text needs.
type Message struct {
	ID          int64
	Campaign    string
	Appointment int64
	Version     int
	Key         string
	Attempts    int // gateway calls made before this claim
	// Reclaimed is true when the row's previous lease ran out unfinished:
	// its earlier attempt may have reached the gateway.
	Reclaimed bool
	Phone     prereg.Sealed
	Where     Appointment
	// Cancelled is true when the appointment was cancelled after the
	// message was written: it is failed, not sent.
	Cancelled bool
	// Cancellation is true for the message that confirms a cancellation
	// (RenderCancellation): Appointment is 0 and Where is empty.
	Cancellation bool
}

// Outcome is what became of a claimed message.
type Outcome int

// The outcomes a worker records.
const (
	// OutcomeSent: the gateway took it (state sent, status notified).
	OutcomeSent Outcome = iota + 1
	// OutcomeRetry: a transient failure; try again at NextAttempt.
	OutcomeRetry
	// OutcomeFailed: a permanent failure, reported and not retried.
	OutcomeFailed
	// OutcomeReleased: not attempted (breaker open, lease running out, a
	// stop); back to pending at NextAttempt without counting an attempt.
	OutcomeReleased
)

// Result is the outcome of one claimed message.
type Result struct {
	ID          int64
	Outcome     Outcome
	MessageID   string // the gateway's, when sent
	Type        Type
	Error       string // never personal data
	NextAttempt time.Time
	// Unanswered is a call whose answer never came (a timeout, a cut
	// connection): the gateway may have taken the message, so sending it
	// again may deliver it twice without idempotency. Counted on the row.
	Unanswered bool
}

// Outbox is the store notify drains.
type Outbox interface {
	// Claim leases up to limit due pending rows to owner until leaseUntil
	// (FOR UPDATE SKIP LOCKED), so that no other worker takes them
	// meanwhile.
	Claim(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]Message, error)
	// Complete records results of rows leased to owner; rows whose lease
	// another worker has taken since are left alone.
	Complete(ctx context.Context, owner string, now time.Time, results []Result) error
	// Pending counts rows still to send (pending, due or not).
	Pending(ctx context.Context) (int, error)
}

// Sender hands messages to the SMS gateway; *Gateway is one. A sender
// with an Open() bool method (a breaker) is asked before each claim.
type Sender interface {
	Send(ctx context.Context, m Outgoing) (Accepted, error)
}

// Opener opens sealed phones; *keys.Sealer is one.
type Opener interface {
	Open(v prereg.Sealed, aad []byte) ([]byte, error)
}

// Campaigns reads campaigns; *postgres.CampaignStore is one.
type Campaigns interface {
	Get(ctx context.Context, id string) (*campaign.Campaign, error)
}

// Config configures a Worker. Outbox, Gateway, Phones and Campaigns are
// required.
type Config struct {
	// Outbox is the store the worker drains (postgres.OutboxStore).
	Outbox Outbox
	// Gateway sends the messages (*Gateway).
	Gateway Sender
	// Phones opens the sealed phones (*keys.Sealer).
	Phones Opener
	// Campaigns gives the text of a campaign's messages
	// (postgres.CampaignStore); the worker caches them.
	Campaigns Campaigns
	// Owner names this worker's leases; unique per worker. Default: host,
	// pid and a random suffix.
	Owner string
	// BatchSize rows are claimed at once by each of Loops claim loops;
	// Concurrency sends are in flight across all of them. Several loops
	// keep the sends busy while a batch is claimed or recorded.
	BatchSize   int
	Concurrency int
	Loops       int
	// Rate is the account's limit in messages per second (default 100;
	// math.Inf(1) for none) and Burst its bucket (default 1: never more
	// than Rate in any second).
	Rate  float64
	Burst int
	// Lease is how long a claim holds its rows. A worker sends only while
	// its lease runs, so a reclaimed row is never in flight twice.
	Lease time.Duration
	// SendTimeout bounds one gateway call.
	SendTimeout time.Duration
	// PollInterval is the pause when nothing is due.
	PollInterval time.Duration
	// Retries back off with capped full jitter (worker.Backoff): a random
	// wait in (0, min(RetryCap, RetryBase·2^(attempt-1))].
	RetryBase time.Duration
	RetryCap  time.Duration
	// BreakerPause is how long rows wait when the breaker is open.
	BreakerPause time.Duration
	// AfterAccept, when set, is called after the gateway accepted a
	// message and before it is marked sent: the fault hook that tests use
	// to crash inside that window.
	AfterAccept func(Message)
	Now         func() time.Time
	Logger      *slog.Logger
	// Registerer gets the worker's metrics when set.
	Registerer prometheus.Registerer
	// Keys is raised when a phone names an encryption key this process
	// lacks: the worker then stops claiming, and Ready says why. Share it
	// with the Resealer; the worker makes its own when nil.
	Keys *keys.Alarm
}

// Stats are a worker's counts since it was made.
type Stats struct {
	Claimed   int64 // rows claimed
	Sent      int64 // accepted by the gateway
	Duplicate int64 // accepted as a repeat of a key the gateway had seen
	Retried   int64 // transient failures, to be retried
	Failed    int64 // permanent failures, reported
	Released  int64 // claimed but not attempted
	// Reclaimed counts rows taken over after another lease ran out: the
	// only sends that a gateway ignoring idempotency keys may deliver
	// twice.
	Reclaimed int64
	// Unanswered counts calls whose answer never came (timeouts, cut
	// connections); their retries may likewise arrive twice.
	Unanswered   int64
	BreakerOpens int64
}

// Worker drains the outbox. Start runs it in the background; DrainOnce
// runs one claim-send-record cycle in the caller (use one or the other).
type Worker struct {
	cfg       Config
	store     Outbox
	gw        Sender
	phones    Opener
	campaigns *campaign.Cache
	limiter   *rate.Limiter
	pace      *pace         // adapts limiter to the gateway's 429s
	sem       chan struct{} // Concurrency sends in flight across all loops
	log       *slog.Logger
	metrics   *metrics
	health    *worker.Health

	claimed, sent, duplicate, retried, failed, released, reclaimed, unanswered, breakerOpens atomic.Int64

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New validates the configuration, fills its defaults and returns a
// worker.
func New(cfg Config) (*Worker, error) {
	if cfg.Outbox == nil || cfg.Gateway == nil || cfg.Phones == nil || cfg.Campaigns == nil {
		return nil, errors.New("notify: Outbox, Gateway, Phones and Campaigns are required")
	}
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 256)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 32)
	cfg.Loops = cmp.Or(cfg.Loops, 2)
	cfg.Rate = cmp.Or(cfg.Rate, 100)
	cfg.Burst = cmp.Or(cfg.Burst, 1)
	cfg.Lease = cmp.Or(cfg.Lease, time.Minute)
	cfg.SendTimeout = cmp.Or(cfg.SendTimeout, 10*time.Second)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 500*time.Millisecond)
	cfg.RetryBase = cmp.Or(cfg.RetryBase, time.Second)
	cfg.RetryCap = cmp.Or(cfg.RetryCap, 5*time.Minute)
	cfg.BreakerPause = cmp.Or(cfg.BreakerPause, 5*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = fmt.Sprintf("%s/%d/%s", cmp.Or(host, "notify"), os.Getpid(), hex.EncodeToString(b[:]))
	}
	if cfg.Rate < 0 || cfg.BatchSize < 1 || cfg.Concurrency < 1 || cfg.Loops < 1 || cfg.Burst < 1 {
		return nil, fmt.Errorf("notify: invalid config (rate %v, batch %d, concurrency %d, loops %d, burst %d)",
			cfg.Rate, cfg.BatchSize, cfg.Concurrency, cfg.Loops, cfg.Burst)
	}
	if cfg.SendTimeout >= cfg.Lease {
		return nil, fmt.Errorf("notify: send timeout %v must be shorter than the lease %v", cfg.SendTimeout, cfg.Lease)
	}
	lim := rate.Limit(cfg.Rate)
	if math.IsInf(cfg.Rate, 1) {
		lim = rate.Inf
	}
	// A campaign reload changes the text of messages not sent yet within
	// a minute.
	campaigns, err := campaign.NewCache(campaign.CacheConfig{Source: campaign.SourceFunc(cfg.Campaigns.Get), TTL: time.Minute, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	w := &Worker{
		cfg:       cfg,
		store:     cfg.Outbox,
		gw:        cfg.Gateway,
		phones:    cfg.Phones,
		campaigns: campaigns,
		limiter:   rate.NewLimiter(lim, cfg.Burst),
		sem:       make(chan struct{}, cfg.Concurrency),
		log:       cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
	}
	w.pace = newPace(w.limiter, lim)
	w.health = worker.NewHealth("notify", w.log, cfg.Now)
	if cfg.Keys == nil {
		w.cfg.Keys = &keys.Alarm{Stage: "notify", Logger: w.log}
	}
	if cfg.Registerer != nil {
		if w.metrics, err = newMetrics(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// BreakerOpened tells the worker's counts that the gateway's breaker
// opened; wire it to GatewayConfig.OnStateChange.
func (w *Worker) BreakerOpened() {
	w.breakerOpens.Add(1)
	if w.metrics != nil {
		w.metrics.breakerOpens.Inc()
	}
}

// Stats returns the worker's counts.
func (w *Worker) Stats() Stats {
	return Stats{
		Claimed: w.claimed.Load(), Sent: w.sent.Load(), Duplicate: w.duplicate.Load(),
		Retried: w.retried.Load(), Failed: w.failed.Load(), Released: w.released.Load(),
		Reclaimed: w.reclaimed.Load(), Unanswered: w.unanswered.Load(), BreakerOpens: w.breakerOpens.Load(),
	}
}

// Ready is an error while the worker is stopped for a missing key.
func (w *Worker) Ready(context.Context) error { return w.cfg.Keys.Err() }

// Pending is the number of messages still to send.
func (w *Worker) Pending(ctx context.Context) (int, error) { return w.store.Pending(ctx) }

// Start runs the worker in the background until Stop or ctx ends, as a
// pipeline: Loops claimers lease batches and queue their messages,
// Concurrency senders take them from the queue, and Loops recorders write
// the outcomes in batches. The queue keeps the senders busy while a claim
// waits on PostgreSQL, and the recorders never make a sender wait
// (recordLoop).
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		return errors.New("notify: worker already started")
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	queue := make(chan leased, 2*w.claimLimit())
	results := make(chan Result, 2*w.cfg.Concurrency)
	var claimers, senders sync.WaitGroup
	for range w.cfg.Loops {
		claimers.Go(func() { w.claimLoop(ctx, queue, results) })
	}
	for range w.cfg.Concurrency {
		senders.Go(func() {
			for l := range queue {
				results <- w.sendLeased(ctx, l)
			}
		})
	}
	w.health.Running()
	recorded := make(chan struct{})
	go func() { w.recordLoop(results); close(recorded) }()
	go func() {
		claimers.Wait()
		close(queue)
		senders.Wait()
		close(results)
		<-recorded
		w.health.Stopped()
		close(w.done)
	}()
	w.log.Info("notify worker started", slog.String("owner", w.cfg.Owner), slog.Float64("rate", w.cfg.Rate))
	return nil
}

// State is the worker's state for /readyz: running, waiting on
// PostgreSQL, or stopped.
func (w *Worker) State() worker.State { return w.health.State() }

// Stop stops claiming, releases what is queued, waits for the sends in
// flight (each finishes or times out on its own deadline: a call cut
// short may have reached the gateway, and would be sent again) and
// records every outcome. It is safe to call more than once.
func (w *Worker) Stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// leased is a claimed message and the end of its lease.
type leased struct {
	Message
	until time.Time
}

// claimLimit is how many rows one claim takes: no more than the rate
// lets us send within half the lease, so rows do not sit leased and unsent.
func (w *Worker) claimLimit() int {
	if math.IsInf(w.cfg.Rate, 1) {
		return w.cfg.BatchSize
	}
	return max(1, min(w.cfg.BatchSize, int(w.cfg.Rate*w.cfg.Lease.Seconds()/2)))
}

func (w *Worker) claimLoop(ctx context.Context, queue chan<- leased, results chan<- Result) {
	wait := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	pause := func() { wait(w.cfg.PollInterval) }
	failures := 0
	for ctx.Err() == nil {
		if b, ok := w.gw.(interface{ Open() bool }); ok && b.Open() {
			pause()
			continue
		}
		if w.cfg.Keys.Raised() {
			// A phone under a key this process lacks: claiming more would
			// only hand them back; a restart with the key mends it.
			pause()
			continue
		}
		now := w.cfg.Now()
		until := now.Add(w.cfg.Lease)
		msgs, err := w.store.Claim(ctx, w.cfg.Owner, now, until, w.claimLimit())
		if err != nil {
			if ctx.Err() == nil {
				w.health.Down(worker.PostgreSQL, fmt.Errorf("claim: %w", err))
			}
			// Every loop of every worker asks again: spread them out.
			failures++
			wait(worker.Backoff(failures, w.cfg.PollInterval, maxClaimWait))
			continue
		}
		failures = 0
		w.health.Up(worker.PostgreSQL)
		if len(msgs) == 0 {
			pause()
			continue
		}
		w.claimed.Add(int64(len(msgs)))
		for i, m := range msgs {
			w.noteReclaimed(m)
			select {
			case queue <- leased{Message: m, until: until}:
			case <-ctx.Done():
				// Stopping: give back what was claimed and not queued.
				for _, r := range msgs[i:] {
					results <- Result{ID: r.ID, Outcome: OutcomeReleased, NextAttempt: w.cfg.Now(), Error: "worker stopped"}
				}
				return
			}
		}
	}
}

// maxClaimWait caps the wait between claims while PostgreSQL fails them.
const maxClaimWait = 10 * time.Second

// sendLeased sends one queued message while its lease runs. Stop (the
// end of stop) keeps a send from starting, never cuts one short.
func (w *Worker) sendLeased(stop context.Context, l leased) Result {
	deadline := l.until.Add(-w.cfg.SendTimeout)
	if stop.Err() != nil || !w.cfg.Now().Before(deadline) {
		return Result{ID: l.ID, Outcome: OutcomeReleased, NextAttempt: w.cfg.Now(), Error: "not sent before the lease ran out"}
	}
	sctx, cancel := context.WithDeadline(context.WithoutCancel(stop), deadline)
	defer cancel()
	return w.send(sctx, stop, l.Message)
}

// recordLoop collects outcomes into batches and has Loops recorders write
// them, one statement per batch. A batch goes to a recorder that is free,
// when it is full or at least every 50ms; outcomes that arrive while every
// recorder is busy join the next batch, however many. So the senders never
// wait on PostgreSQL: a slow write makes the next batch larger, not the
// sends slower. What waits is bounded by the rows claimed.
func (w *Worker) recordLoop(results <-chan Result) {
	batches := make(chan []Result) // taken by a recorder that is free
	var writers sync.WaitGroup
	for range w.cfg.Loops {
		writers.Go(func() {
			for b := range batches {
				w.record(b)
			}
		})
	}
	defer writers.Wait()
	defer close(batches)
	buf := make([]Result, 0, w.cfg.BatchSize)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	due := false // a tick came since the last batch left
	for {
		var out chan<- []Result // nil, so never ready, until a batch is due
		if len(buf) >= w.cfg.BatchSize || (due && len(buf) > 0) {
			out = batches
		}
		select {
		case r, ok := <-results:
			if !ok {
				if len(buf) > 0 {
					batches <- buf
				}
				return
			}
			w.count(r)
			buf = append(buf, r)
		case out <- buf:
			buf, due = make([]Result, 0, w.cfg.BatchSize), false
		case <-tick.C:
			due = true
		}
	}
}

// depRecord is recording outcomes, told apart from claiming (PostgreSQL)
// so that one failing while the other works is not reported down and up by
// turns.
const depRecord = "postgresql: record outcomes"

// record writes one batch of outcomes, retrying a failed write twice.
func (w *Worker) record(batch []Result) {
	for attempt := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.store.Complete(ctx, w.cfg.Owner, w.cfg.Now(), batch)
		cancel()
		if err == nil {
			w.health.Up(depRecord)
			return
		}
		// Unrecorded outcomes keep their lease: the rows are sent again
		// (same key) once it runs out, and counted as unconfirmed.
		w.health.Down(depRecord, fmt.Errorf("record %d outcomes, attempt %d: %w", len(batch), attempt+1, err))
		time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
	}
}

func (w *Worker) noteReclaimed(m Message) {
	if !m.Reclaimed {
		return
	}
	w.reclaimed.Add(1)
	if w.metrics != nil {
		w.metrics.reclaimed.Inc()
	}
	w.log.Warn("notify: resending a message whose earlier attempt was unfinished; a gateway without idempotency keys may deliver it twice",
		slog.Int64("outbox", m.ID), slog.Int("attempts", m.Attempts))
}

// DrainOnce claims one batch of due messages, sends them and records the
// outcomes. It returns how many it claimed: 0 when nothing is due.
func (w *Worker) DrainOnce(ctx context.Context) (int, error) {
	// While the breaker is open every send would fail at once: leave the
	// rows where they are rather than claim and release them.
	if b, ok := w.gw.(interface{ Open() bool }); ok && b.Open() {
		return 0, nil
	}
	if err := w.cfg.Keys.Err(); err != nil {
		return 0, err
	}
	now := w.cfg.Now()
	leaseUntil := now.Add(w.cfg.Lease)
	msgs, err := w.store.Claim(ctx, w.cfg.Owner, now, leaseUntil, w.claimLimit())
	if err != nil {
		return 0, fmt.Errorf("notify: claim: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	w.claimed.Add(int64(len(msgs)))
	// Sends stop a margin before the lease ends: after it, another worker
	// may own the row. The end of ctx releases what was not sent yet and
	// leaves calls in flight to finish.
	sendCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), leaseUntil.Add(-w.cfg.SendTimeout))
	defer cancel()

	results := make([]Result, len(msgs))
	var breakerOpen atomic.Bool
	sem := w.sem
	var wg sync.WaitGroup
	for i, m := range msgs {
		w.noteReclaimed(m)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if breakerOpen.Load() {
				results[i] = Result{ID: m.ID, Outcome: OutcomeReleased, NextAttempt: w.cfg.Now().Add(w.cfg.BreakerPause), Error: ErrBreakerOpen.Error()}
				return
			}
			results[i] = w.send(sendCtx, ctx, m)
			if results[i].Outcome == OutcomeReleased && results[i].Error == ErrBreakerOpen.Error() {
				breakerOpen.Store(true)
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		w.count(r)
	}
	// Record even when ctx ended: what the gateway took must be marked.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if err := w.store.Complete(rctx, w.cfg.Owner, w.cfg.Now(), results); err != nil {
		return len(msgs), fmt.Errorf("notify: record outcomes: %w", err)
	}
	return len(msgs), nil
}

func (w *Worker) count(r Result) {
	var c *atomic.Int64
	switch r.Outcome {
	case OutcomeSent:
		c = &w.sent
	case OutcomeRetry:
		c = &w.retried
	case OutcomeFailed:
		c = &w.failed
	default:
		c = &w.released
	}
	c.Add(1)
	if w.metrics != nil {
		w.metrics.outcomes.WithLabelValues(r.outcomeLabel()).Inc()
	}
}

func (r Result) outcomeLabel() string {
	switch r.Outcome {
	case OutcomeSent:
		return "sent"
	case OutcomeRetry:
		return "retry"
	case OutcomeFailed:
		return "failed"
	default:
		return "released"
	}
}

// send renders, opens the phone and calls the gateway for one message.
// Ctx bounds the whole send; the end of stop releases the message if its
// call has not started, and leaves a call in flight alone.
func (w *Worker) send(ctx, stop context.Context, m Message) Result {
	res := Result{ID: m.ID}
	if m.Cancelled {
		return w.fail(res, m, errors.New("appointment cancelled"))
	}
	c, err := w.campaigns.Get(ctx, m.Campaign)
	if err != nil {
		return w.retry(res, m, fmt.Errorf("campaign: %w", err))
	}
	text, err := renderMessage(c, m)
	if err != nil {
		return w.fail(res, m, err)
	}
	res.Type = text.Type
	phone, err := w.phones.Open(m.Phone, []byte(m.Campaign))
	switch {
	case w.cfg.Keys.Raise(err):
		// A key this worker lacks: the operator's error, not the
		// message's. Hand it back uncounted, at once, for a worker that
		// has the key; this one stops claiming.
		res.Outcome, res.NextAttempt, res.Error = OutcomeReleased, w.cfg.Now(), "phone sealed with a key id not configured here"
		return res
	case err != nil:
		return w.fail(res, m, errors.New("phone cannot be opened"))
	}
	wctx, cancelWait := context.WithCancel(ctx)
	unhook := context.AfterFunc(stop, cancelWait)
	err = w.limiter.Wait(wctx)
	unhook()
	cancelWait()
	switch {
	case stop.Err() != nil:
		res.Outcome, res.NextAttempt, res.Error = OutcomeReleased, w.cfg.Now(), "worker stopped"
		return res
	case err != nil:
		res.Outcome, res.NextAttempt, res.Error = OutcomeReleased, w.cfg.Now(), "not sent before the lease ran out"
		return res
	}
	sctx, cancel := context.WithTimeout(ctx, w.cfg.SendTimeout)
	acc, err := w.gw.Send(sctx, Outgoing{To: string(phone), Body: text.Body, Type: text.Type, Key: m.Key})
	cancel()
	clear(phone)
	switch {
	case err == nil:
		if w.cfg.AfterAccept != nil {
			w.cfg.AfterAccept(m)
		}
		if acc.Duplicate {
			w.duplicate.Add(1)
		}
		w.pace.taken(w.cfg.Now())
		res.Outcome, res.MessageID = OutcomeSent, acc.MessageID
		return res
	case rateLimited(err):
		// Not the message's failure: see pace.go.
		w.pace.refused(w.cfg.Now())
		var se *SendError
		errors.As(err, &se)
		res.Outcome, res.NextAttempt, res.Error = OutcomeReleased, w.cfg.Now().Add(rateLimitedWait(se.RetryAfter)), "rate limited by the gateway"
		return res
	case errors.Is(err, ErrBreakerOpen):
		res.Outcome, res.NextAttempt, res.Error = OutcomeReleased, w.cfg.Now().Add(w.cfg.BreakerPause), ErrBreakerOpen.Error()
		return res
	case ctx.Err() != nil:
		// The lease ran out mid-call: the gateway may or may not have it;
		// the next claim resends under the same key.
		r := w.retry(res, m, errors.New("interrupted"))
		r.Unanswered = true
		w.unanswered.Add(1)
		return r
	case IsPermanent(err):
		return w.fail(res, m, err)
	default:
		r := w.retry(res, m, err)
		if unanswered(err) {
			r.Unanswered = true
			w.unanswered.Add(1)
		}
		var se *SendError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			r.NextAttempt = maxTime(r.NextAttempt, w.cfg.Now().Add(se.RetryAfter))
		}
		return r
	}
}

// rateLimited reports whether the gateway refused a send with 429.
func rateLimited(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Status == http.StatusTooManyRequests
}

// unanswered reports whether a failed call may have reached the gateway
// and been taken: no HTTP answer came, and the connection was not refused.
func unanswered(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var se *SendError
	return errors.As(err, &se) && se.Status == 0
}

func (w *Worker) retry(res Result, m Message, err error) Result {
	res.Outcome, res.Error = OutcomeRetry, err.Error()
	res.NextAttempt = w.cfg.Now().Add(worker.Backoff(m.Attempts+1, w.cfg.RetryBase, w.cfg.RetryCap))
	return res
}

func (w *Worker) fail(res Result, m Message, err error) Result {
	res.Outcome, res.Error = OutcomeFailed, err.Error()
	w.log.Warn("notify: message failed permanently", slog.Int64("outbox", m.ID), slog.Int64("appointment", m.Appointment), slog.String("error", err.Error()))
	return res
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

type metrics struct {
	outcomes     *prometheus.CounterVec
	reclaimed    prometheus.Counter
	breakerOpens prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_notify_messages_total", Help: "Outbox messages by outcome of a send attempt.",
		}, []string{"outcome"}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prereg_notify_reclaimed_total", Help: "Messages resent after an unfinished attempt (possible duplicates without gateway idempotency).",
		}),
		breakerOpens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prereg_notify_breaker_opens_total", Help: "Times the SMS gateway breaker opened.",
		}),
	}
	// A second worker in one process shares the first one's series.
	var err error
	if m.outcomes, err = collector.Register(reg, m.outcomes); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if m.reclaimed, err = collector.Register(reg, m.reclaimed); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if m.breakerOpens, err = collector.Register(reg, m.breakerOpens); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	return m, nil
}
