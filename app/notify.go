package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
)

// NotifyOptions are the notify role's settings beyond the shared ones.
type NotifyOptions struct {
	// GatewayURL is the SMS gateway's base URL (PREREG_SMS_URL); required
	// for the notify role.
	GatewayURL string
	// WebhookSecret authenticates the gateway's delivery reports on
	// POST /v1/sms/reports (PREREG_SMS_SECRET); required for the admin
	// role to take reports.
	WebhookSecret []byte
	// Rate is the SMS account's limit in messages per second
	// (PREREG_SMS_RATE, default 100; "inf" for none); Burst its bucket.
	Rate  float64
	Burst int
	// Concurrency is the number of sends in flight (PREREG_SMS_CONCURRENCY).
	Concurrency int
	// BatchSize, Lease, PollInterval, RetryBase, RetryCap, BreakerTimeout
	// and TripAfter tune the worker and its breaker; zero: defaults.
	BatchSize      int
	Lease          time.Duration
	PollInterval   time.Duration
	RetryBase      time.Duration
	RetryCap       time.Duration
	BreakerTimeout time.Duration
	TripAfter      uint32
	// Loops is the number of claim loops sharing Concurrency; zero:
	// notify's default.
	Loops int
	// AfterAccept is the fault hook: called after the gateway accepted a
	// message and before it is marked sent (tests crash there).
	AfterAccept func(notify.Message)
}

// startNotify wires the notify role: a worker that drains the outbox to
// the SMS gateway.
func (s *System) startNotify(ctx context.Context) error {
	o := s.opts.Notify
	if o.GatewayURL == "" {
		return errors.New("notify: no SMS gateway: set PREREG_SMS_URL")
	}
	var w *notify.Worker
	gw, err := notify.NewGateway(notify.GatewayConfig{
		URL:            o.GatewayURL,
		TripAfter:      o.TripAfter,
		BreakerTimeout: o.BreakerTimeout,
		OnStateChange: func(from, to gobreaker.State) {
			s.log.Warn("sms gateway breaker", slog.String("from", from.String()), slog.String("to", to.String()))
			if to == gobreaker.StateOpen && w != nil {
				w.BreakerOpened()
			}
		},
	})
	if err != nil {
		return err
	}
	log := s.log.With("role", string(RoleNotify))
	// One alarm for the stage: a phone under a key this process lacks
	// stops both the sends and the re-sealing.
	alarm := &keys.Alarm{Stage: "notify", Logger: log}
	w, err = notify.New(notify.Config{
		Outbox:       &postgres.OutboxStore{Pool: s.pool},
		Gateway:      gw,
		Phones:       s.sealer,
		Campaigns:    s.campaigns,
		Rate:         o.Rate,
		Burst:        o.Burst,
		Concurrency:  o.Concurrency,
		BatchSize:    o.BatchSize,
		Loops:        o.Loops,
		Lease:        o.Lease,
		PollInterval: o.PollInterval,
		RetryBase:    o.RetryBase,
		RetryCap:     o.RetryCap,
		AfterAccept:  o.AfterAccept,
		Now:          s.now,
		Logger:       log,
		Registerer:   s.registry,
		Keys:         alarm,
	})
	if err != nil {
		return err
	}
	if err := s.run(ctx, w); err != nil {
		return err
	}
	s.mu.Lock()
	s.ready = append(s.ready, w.Ready)
	s.mu.Unlock()
	// Phones kept under an old key move to the current one, so that the
	// old key can be retired (docs/SECURITY.md, "Keys and rotation").
	return s.run(ctx, &notify.Resealer{Store: &postgres.PhoneStore{Pool: s.pool}, Sealer: s.sealer, Keys: alarm, Logger: log})
}

// NotifyCounts summarises the outbox (all campaigns when campaign is "").
func (s *System) NotifyCounts(ctx context.Context, campaign string) (postgres.OutboxCounts, error) {
	return (&postgres.OutboxStore{Pool: s.pool}).Counts(ctx, campaign)
}
