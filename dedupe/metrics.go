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
	for _, c := range []prometheus.Collector{m.decisions, m.falsePositives, m.poison, m.batch} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, fmt.Errorf("dedupe: metrics: %w", err)
		}
	}
	return m, nil
}
