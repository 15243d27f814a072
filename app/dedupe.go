package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
)

// DedupeOptions are the dedupe role's settings beyond the shared ones.
type DedupeOptions struct {
	// Shards this process owns (nil: all). Processes that split the shard
	// space must list disjoint sets (PREREG_DEDUPE_SHARDS="0-7" or "0,2,4", config.ParseShards).
	Shards []int
	// Workers splits Shards over this many workers in the process (each
	// its own consumer and transactions, so commits overlap); it needs an
	// explicit Shards list. Default 1.
	Workers int
	// BatchSize is the most outcomes decided in one transaction (1000).
	BatchSize int
	// MaxDeliver, AckWait and RetryDelay tune the consumer; zero: defaults.
	MaxDeliver int
	AckWait    time.Duration
	RetryDelay time.Duration
	// BloomFPRate overrides the campaigns' Bloom false-positive rate
	// (benchmarks and tests).
	BloomFPRate float64
}

// startDedupe starts one dedupe worker for the shards this process owns:
// it rebuilds the Bloom filters from PostgreSQL, then consumes
// intents.verified.<shard> with a durable pull consumer.
func (s *System) startDedupe(ctx context.Context) error {
	o := s.opts.Dedupe
	sets := [][]int{o.Shards}
	if o.Workers > 1 {
		if len(o.Shards) < o.Workers {
			return fmt.Errorf("dedupe: %d workers need an explicit list of at least as many shards", o.Workers)
		}
		sets = make([][]int, o.Workers)
		for i, sh := range o.Shards {
			sets[i%o.Workers] = append(sets[i%o.Workers], sh)
		}
	}
	for _, set := range sets {
		if err := s.startDedupeWorker(ctx, set); err != nil {
			return err
		}
	}
	return nil
}

func (s *System) startDedupeWorker(ctx context.Context, shards []int) error {
	o := s.opts.Dedupe
	w, err := dedupe.New(dedupe.Config{
		Store:       &postgres.DedupeStore{Pool: s.pool},
		JetStream:   s.js,
		Campaigns:   s.campaigns,
		Shards:      shards,
		BatchSize:   o.BatchSize,
		MaxDeliver:  o.MaxDeliver,
		AckWait:     o.AckWait,
		RetryDelay:  o.RetryDelay,
		BloomFPRate: o.BloomFPRate,
		Logger:      s.log.With("role", string(RoleDedupe)),
		Now:         s.now,
		Registerer:  s.registry,
		DeadLetters: &postgres.DeadLetterStore{Pool: s.pool},
		Requests:    &postgres.RequestStore{Pool: s.pool},
	})
	if err != nil {
		return err
	}
	return s.run(ctx, w)
}
