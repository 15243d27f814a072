package dedupe

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg/collector"
)

type metrics struct {
	decisions      *prometheus.CounterVec
	falsePositives prometheus.Counter
	poison         prometheus.Counter
	batch          prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_dedupe_decisions_total",
			Help: "Decisions made by dedupe, by kind and reason.",
		}, []string{"kind", "reason"}),
		falsePositives: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prereg_dedupe_bloom_false_positives_total",
			Help: "Verified outcomes whose Bloom filter said maybe seen but whose person was not registered.",
		}),
		poison: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prereg_dedupe_terminated_total",
			Help: "Messages dedupe could not decide and terminated (undecodable, or their campaign unknown).",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "prereg_dedupe_batch_seconds",
			Help:    "Time to decide one batch, transaction included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	// Several workers in one process share the collectors: the second one
	// adopts what the first registered.
	var err error
	if m.decisions, err = collector.Register(reg, m.decisions); err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	if m.falsePositives, err = collector.Register(reg, m.falsePositives); err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	if m.poison, err = collector.Register(reg, m.poison); err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	if m.batch, err = collector.Register(reg, m.batch); err != nil {
		return nil, fmt.Errorf("dedupe: %w", err)
	}
	return m, nil
}
