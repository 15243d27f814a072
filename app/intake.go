package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
)

// IntakeOptions are the intake role's settings beyond the shared ones.
// Zero values take intake's defaults (see intake.Config and
// docs/STREAMS.md).
type IntakeOptions struct {
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// IPv6Prefix is the IPv6 prefix length one client is limited as
	// (intake.Config.IPv6Prefix).
	IPv6Prefix int
	// Per-device and per-address token buckets (tokens per second, burst);
	// a negative rate disables the limit (benchmarks, load tests from one
	// address).
	DeviceRate  float64
	DeviceBurst int
	AddrRate    float64
	AddrBurst   int
	// MaxInFlight bounds publishes waiting for an ack; PublishTimeout
	// bounds each wait.
	MaxInFlight    int
	PublishTimeout time.Duration
	// Refresh is how often campaigns and providers' health are re-read.
	Refresh time.Duration
	// GroupCommit publishes intents that arrive together as one atomic
	// batch (intake.Config.GroupCommit); it needs Options.Stream with
	// AtomicBatches.
	GroupCommit bool
	// SlowAck and MaxQueueWait are intake's overload guards
	// (intake.Config); zero: defaults. A benchmark that measures throughput
	// rather than shedding relaxes them.
	SlowAck      time.Duration
	MaxQueueWait time.Duration
}

// startIntake wires the intake role: the citizen routes on the public mux,
// a readiness check that fails while JetStream is unreachable or the stream
// is full, and the service whose Stop finishes the publishes in flight.
func (s *System) startIntake(ctx context.Context) error {
	o := s.opts.Intake
	svc, err := intake.New(intake.Config{
		JetStream:      s.js,
		Conn:           s.nc,
		Campaigns:      s.campaigns,
		Clinics:        s.campaigns,
		Statuses:       &postgres.StatusStore{Pool: s.pool},
		Requests:       &postgres.RequestStore{Pool: s.pool},
		Lottery:        lotteryCommitments{&postgres.AllocationStore{Pool: s.pool}},
		Pauses:         &postgres.PauseStore{Pool: s.pool},
		Hasher:         s.hasher,
		Sealer:         s.sealer,
		Registry:       s.registry,
		Logger:         s.log.With(slog.String("role", "intake")),
		Now:            s.now,
		Refresh:        o.Refresh,
		PublishTimeout: o.PublishTimeout,
		MaxInFlight:    o.MaxInFlight,
		DeviceRate:     o.DeviceRate,
		DeviceBurst:    o.DeviceBurst,
		AddrRate:       o.AddrRate,
		AddrBurst:      o.AddrBurst,
		TrustedProxies: o.TrustedProxies,
		IPv6Prefix:     o.IPv6Prefix,
		GroupCommit:    o.GroupCommit,
		SlowAck:        o.SlowAck,
		MaxQueueWait:   o.MaxQueueWait,
	})
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if err := s.run(ctx, svc); err != nil {
		return err
	}
	svc.Register(s.public)
	s.intake = svc
	s.mu.Lock()
	s.ready = append(s.ready, svc.Ready)
	s.mu.Unlock()
	return nil
}

// lotteryCommitments shows the scheduler's seed commitments to intake.
type lotteryCommitments struct{ store *postgres.AllocationStore }

func (l lotteryCommitments) Commitments(ctx context.Context, campaignID string) (map[string]intake.Commitment, error) {
	all, err := l.store.SeedCommitments(ctx, campaignID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]intake.Commitment, len(all))
	for _, c := range all {
		out[c.Window] = intake.Commitment{SeedHash: c.Hash, CommittedAt: c.CommittedAt, Seed: c.Seed}
	}
	return out, nil
}
