package verify

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the stage's Prometheus series. Labels carry campaign ids,
// provider names, verdicts and reasons only: never personal data.
type metrics struct {
	outcomes    *prometheus.CounterVec   // verdict, reason
	calls       *prometheus.CounterVec   // campaign, provider, result
	callSeconds *prometheus.HistogramVec // campaign, provider
	cache       *prometheus.CounterVec   // cache, result
	naks        *prometheus.CounterVec   // cause
	counted     prometheus.Counter
	state       *prometheus.GaugeVec // campaign, provider
	errorRate   *prometheus.GaugeVec // campaign, provider
	inFlight    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_verify_outcomes_total", Help: "Outcomes published, by verdict and reason.",
		}, []string{"verdict", "reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_verify_provider_calls_total",
			Help: "Identity provider calls by result: ok, invalid_token, refused, failure, breaker_open.",
		}, []string{"campaign", "provider", "result"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "prereg_verify_provider_call_seconds", Help: "Duration of identity provider calls.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"campaign", "provider"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_verify_cache_total", Help: "Token and claim cache look-ups by result (hit, miss).",
		}, []string{"cache", "result"}),
		naks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prereg_verify_naks_total",
			Help: "Messages put back with a delay, by cause: breaker_open, provider_failure, bulkhead_full, message_failure, infrastructure, shutdown.",
		}, []string{"cause"}),
		counted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prereg_verify_counted_failures_total", Help: "Failures counted against their message (towards unprocessable).",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "prereg_verify_provider_state", Help: "Breaker state per provider: 0 closed, 1 half-open, 2 open.",
		}, []string{"campaign", "provider"}),
		errorRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "prereg_verify_provider_error_rate", Help: "Failed share of provider calls over the breaker window.",
		}, []string{"campaign", "provider"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "prereg_verify_in_flight", Help: "Messages taken by the pools and not yet settled.",
		}),
	}
	var err error
	m.outcomes, err = register(reg, m.outcomes, err)
	m.calls, err = register(reg, m.calls, err)
	m.callSeconds, err = register(reg, m.callSeconds, err)
	m.cache, err = register(reg, m.cache, err)
	m.naks, err = register(reg, m.naks, err)
	m.counted, err = register(reg, m.counted, err)
	m.state, err = register(reg, m.state, err)
	m.errorRate, err = register(reg, m.errorRate, err)
	m.inFlight, err = register(reg, m.inFlight, err)
	if err != nil {
		return nil, fmt.Errorf("verify: metrics: %w", err)
	}
	return m, nil
}

// register registers c, or reuses the collector already registered under
// its name (a second verifier in the same process shares the series).
func register[T prometheus.Collector](reg prometheus.Registerer, c T, prev error) (T, error) {
	if prev != nil {
		return c, prev
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(T); ok {
				return ex, nil
			}
		}
		return c, err
	}
	return c, nil
}
