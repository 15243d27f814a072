package intake

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are intake's Prometheus metrics. Labels carry routes, statuses
// and reasons only, never anything about a person.
type metrics struct {
	requests    *prometheus.CounterVec
	publish     prometheus.Histogram
	shed        *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	inFlight    prometheus.Gauge
	groupSize   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_intake_requests_total",
			Help: "Requests answered by intake, by route and HTTP status.",
		}, []string{"route", "status"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "prereg_intake_publish_seconds",
			Help:    "Time from publishing an intent to the stream's ack.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_intake_shed_total",
			Help: "Intents answered 503 overloaded, by reason.",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_intake_rate_limited_total",
			Help: "Requests answered 429, by the limit that was hit (device, address, lookup, receipt: a receipt locked after wrong birth dates).",
		}, []string{"limit"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "prereg_intake_publishes_in_flight",
			Help: "Publishes waiting for the stream's ack.",
		}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "prereg_intake_group_size",
			Help:    "Intents per publish with group commit on: one atomic batch, one disk flush.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.publish, m.shed, m.rateLimited, m.inFlight, m.groupSize} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
