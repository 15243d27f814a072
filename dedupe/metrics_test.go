package dedupe_test

import (
	"github.com/prereg/prereg/dedupe"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// counterValue sums a counter family of the registry.
func counterValue(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue()
		}
	}
	return v
}

func TestWorkersShareMetrics(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reg := prometheusRegistry()
	c := loadCampaign(t, e.campaigns, 4, 4, 100)
	w := newWorld(c, 21, 40)
	w.publish(t, e.js.JS)
	e.startWorker(t, e.js.JS, dedupe.Config{Shards: []int{0, 1}, Registerer: reg})
	e.startWorker(t, e.js.JS, dedupe.Config{Shards: []int{2, 3}, Registerer: reg})
	score(t, e, w)
	require.Equal(t, float64(len(w.outcomes)), counterValue(t, reg, "prereg_dedupe_decisions_total"), "both workers' decisions are counted")
}
