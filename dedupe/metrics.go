package dedupe

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
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
	if m.decisions, err = adopt(reg, m.decisions); err != nil {
		return nil, err
	}
	if m.falsePositives, err = adopt(reg, m.falsePositives); err != nil {
		return nil, err
	}
	if m.poison, err = adopt(reg, m.poison); err != nil {
		return nil, err
	}
	if m.batch, err = adopt(reg, m.batch); err != nil {
		return nil, err
	}
	return m, nil
}

func adopt[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("dedupe: metrics: %w", err)
}
