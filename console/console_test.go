package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/console"
)

// fakeStore counts what a test sets.
type fakeStore struct {
	mu      sync.Mutex
	decided int64
	err     error
}

func (f *fakeStore) Counts(context.Context, time.Time) (console.Counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return console.Counts{}, f.err
	}
	return console.Counts{Campaigns: map[string]console.CampaignCount{
		"c1": {Decided: f.decided, Decisions: map[string]int64{"registered": f.decided}, Outbox: map[string]int64{"delivered": f.decided / 2}},
	}}, nil
}

// The sampler turns the process's counters and the database's counts
// into rates between samples, reads the stages' lags from their own
// consumers only, keeps a bounded ring, and answers ?since= with the
// later samples alone.
func TestSamplerRatesAndRing(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prereg_intake_requests_total"}, []string{"route", "status"})
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prereg_intake_shed_total"}, []string{"reason"})
	pending := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "prereg_consumer_pending_messages"}, []string{"stream", "consumer"})
	age := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "prereg_stream_oldest_message_age_seconds"}, []string{"stream"})
	reg.MustRegister(requests, shed, pending, age)

	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := &fakeStore{}
	s, err := console.New(console.Config{
		Gatherer: reg, Store: store, Keep: 3, Now: clock,
		VerifyConsumer: "verify", DedupeConsumers: "dedupe",
		Health: func(context.Context) (map[string]prereg.ProviderHealth, error) {
			return map[string]prereg.ProviderHealth{"c1.pass": {State: "open", ErrorRate: 0.5}, "c.with.dots.kakao": {State: "closed"}}, nil
		},
	})
	require.NoError(t, err)
	ctx := context.Background()

	first := s.Take(ctx)
	require.Empty(t, first.SubmitsPerS, "no rate without an earlier sample")
	require.Equal(t, []console.Provider{
		{Campaign: "c.with.dots", Name: "kakao", State: "closed"},
		{Campaign: "c1", Name: "pass", State: "open", ErrorRate: 0.5},
	}, first.Providers)

	requests.WithLabelValues("submit", "202").Add(100)
	requests.WithLabelValues("submit", "503").Add(10)
	requests.WithLabelValues("status", "200").Add(1000) // not a submission
	shed.WithLabelValues("cpu").Add(10)
	pending.WithLabelValues("INTENTS_SUBMITTED", "verify").Set(7)
	pending.WithLabelValues("INTENTS_VERIFIED", "dedupe-0-1").Set(5)
	pending.WithLabelValues("INTENTS_VERIFIED", "dedupe-2-3").Set(6)
	pending.WithLabelValues("INTENTS_VERIFIED", "check-scan").Set(9999)
	age.WithLabelValues("INTENTS_SUBMITTED").Set(12)
	store.decided = 40
	now = now.Add(2 * time.Second)
	second := s.Take(ctx)
	require.Equal(t, map[string]float64{"202": 50, "503": 5}, second.SubmitsPerS)
	require.Equal(t, map[string]float64{"cpu": 5}, second.ShedPerS)
	require.Equal(t, 100.0, second.Accepted)
	require.Equal(t, 7.0, second.VerifyBacklog)
	require.Equal(t, 11.0, second.DedupeBacklog, "a scan's consumer is not dedupe's backlog")
	require.Equal(t, 12.0, second.VerifyLagSeconds)
	require.Equal(t, 20.0, second.Campaigns["c1"].DecidedPerS)
	require.Equal(t, 10.0, second.Campaigns["c1"].DeliveredPerS)

	// A sample without the database says so and keeps the metrics.
	store.err = context.DeadlineExceeded
	now = now.Add(2 * time.Second)
	third := s.Take(ctx)
	require.Equal(t, []string{"database"}, third.Errors)
	require.Equal(t, 100.0, third.Accepted)
	require.Equal(t, int64(40), third.Campaigns["c1"].Decided, "the last good reading is shown")
	require.Equal(t, second.At, third.CountsAt, "and said to be of its time")

	store.err = nil
	now = now.Add(2 * time.Second)
	s.Take(ctx)
	require.Len(t, s.Since(time.Time{}), 3, "the ring keeps the last Keep samples")
	require.Equal(t, second.At, s.Since(time.Time{})[0].At)

	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "?since=" + itoa(third.At.UnixMilli()))
	require.NoError(t, err)
	defer resp.Body.Close()
	var got struct{ Samples []console.Sample }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Len(t, got.Samples, 1, "only the samples after since")
	resp, err = http.Get(srv.URL + "?since=yesterday")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// As a service: it samples at once, and Stop ends it.
	require.NoError(t, s.Start(ctx))
	require.Error(t, s.Start(ctx), "started once")
	s.Stop()
	s.Stop()
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// slowStore is a fakeStore whose reading takes took of the test's clock.
type slowStore struct {
	fakeStore
	clock *time.Time
	took  time.Duration
	reads int
}

func (s *slowStore) Counts(ctx context.Context, now time.Time) (console.Counts, error) {
	s.reads++
	*s.clock = s.clock.Add(s.took)
	return s.fakeStore.Counts(ctx, now)
}

// On tables large enough that reading the counts takes a while, the
// sampler reads them again only after ten times that, showing the last
// reading (and when it was taken) in between, with the rates since the
// reading before.
func TestSamplerSparesALargeDatabase(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	store := &slowStore{clock: &now, took: time.Second}
	s, err := console.New(console.Config{Gatherer: prometheus.NewRegistry(), Store: store, Now: func() time.Time { return now }})
	require.NoError(t, err)
	ctx := context.Background()

	first := s.Take(ctx)
	require.Equal(t, 1, store.reads)
	require.Equal(t, first.At, first.CountsAt)

	store.decided = 100
	var last console.Sample
	for range 4 { // 2 s apart, within ten times the reading's second
		now = now.Add(2 * time.Second)
		last = s.Take(ctx)
		require.Equal(t, 1, store.reads, "read again too soon")
		require.Equal(t, first.CountsAt, last.CountsAt)
		require.Equal(t, int64(0), last.Campaigns["c1"].Decided, "the last reading shown")
	}
	now = now.Add(2 * time.Second)
	next := s.Take(ctx)
	require.Equal(t, 2, store.reads, "read again once ten times its duration has passed")
	require.Equal(t, next.At, next.CountsAt)
	require.Equal(t, int64(100), next.Campaigns["c1"].Decided)
	dt := next.CountsAt.Sub(first.CountsAt).Seconds()
	require.InDelta(t, 100/dt, next.Campaigns["c1"].DecidedPerS, 1e-9, "the rate over the time between the readings")

	// A reading that fails is tried again after ten times what it took;
	// meanwhile the samples show the last good reading and the failure.
	store.err = context.DeadlineExceeded
	now = now.Add(20 * time.Second)
	failed := s.Take(ctx)
	require.Equal(t, 3, store.reads)
	require.Equal(t, []string{"database"}, failed.Errors)
	require.Equal(t, next.CountsAt, failed.CountsAt)
	require.Equal(t, int64(100), failed.Campaigns["c1"].Decided)
	now = now.Add(2 * time.Second)
	after := s.Take(ctx)
	require.Equal(t, 3, store.reads, "not tried again too soon")
	require.Equal(t, []string{"database"}, after.Errors, "the failure is still told")
	store.err = nil
	now = now.Add(10 * time.Second)
	require.Empty(t, s.Take(ctx).Errors)
	require.Equal(t, 4, store.reads)

	store.took = time.Millisecond // small tables: every sample reads
	now = now.Add(20 * time.Second)
	s.Take(ctx)
	now = now.Add(2 * time.Second)
	s.Take(ctx)
	require.Equal(t, 6, store.reads)
}
