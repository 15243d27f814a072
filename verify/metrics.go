package verify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg/collector"
	"github.com/prereg/prereg/deadletter"
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
	deadLetters *prometheus.CounterVec // stream, reason
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
	if m.outcomes, err = collector.Register(reg, m.outcomes); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.calls, err = collector.Register(reg, m.calls); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.callSeconds, err = collector.Register(reg, m.callSeconds); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.cache, err = collector.Register(reg, m.cache); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.naks, err = collector.Register(reg, m.naks); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.counted, err = collector.Register(reg, m.counted); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.state, err = collector.Register(reg, m.state); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.errorRate, err = collector.Register(reg, m.errorRate); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.inFlight, err = collector.Register(reg, m.inFlight); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if m.deadLetters, err = deadletter.Counter(reg); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return m, nil
}
