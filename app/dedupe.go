package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
)

// DedupeOptions are the dedupe role's settings beyond the shared ones.
type DedupeOptions struct {
	// Shards this process owns (nil: all). Processes that split the shard
	// space must list disjoint sets (PREREG_DEDUPE_SHARDS="0-7" or "0,2,4").
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

// ParseShards parses a shard set such as "0-3,8,9"; "" or "all" means
// every shard (nil).
func ParseShards(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("shards %q: want numbers or ranges such as 0-7,9", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("shards %q: want numbers or ranges such as 0-7,9", s)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
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
	})
	if err != nil {
		return err
	}
	return s.run(ctx, w)
}

// DedupeOptionsFromEnv reads the dedupe settings of `prereg serve`:
// PREREG_DEDUPE_SHARDS (e.g. "0-7"; unset: all), PREREG_DEDUPE_WORKERS and
// PREREG_DEDUPE_BATCH.
func DedupeOptionsFromEnv(getenv func(string) string) (DedupeOptions, error) {
	var o DedupeOptions
	var err error
	if o.Shards, err = ParseShards(getenv("PREREG_DEDUPE_SHARDS")); err != nil {
		return o, fmt.Errorf("PREREG_DEDUPE_SHARDS: %w", err)
	}
	if v := getenv("PREREG_DEDUPE_WORKERS"); v != "" {
		if o.Workers, err = strconv.Atoi(v); err != nil || o.Workers < 1 {
			return o, fmt.Errorf("PREREG_DEDUPE_WORKERS: want a positive number")
		}
	}
	if v := getenv("PREREG_DEDUPE_BATCH"); v != "" {
		if o.BatchSize, err = strconv.Atoi(v); err != nil || o.BatchSize < 1 {
			return o, fmt.Errorf("PREREG_DEDUPE_BATCH: want a positive number")
		}
	}
	return o, nil
}
