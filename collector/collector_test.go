package collector_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg/collector"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	counter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "prereg_test_total", Help: "A test counter."})
	}

	t.Run("first registration keeps the collector", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		c := counter()
		got, err := collector.Register(reg, c)
		if err != nil || got != c {
			t.Fatalf("Register = %v, %v; want the collector itself and no error", got, err)
		}
	})

	t.Run("identical collector is reused", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		first, err := collector.Register(reg, counter())
		if err != nil {
			t.Fatal(err)
		}
		second, err := collector.Register(reg, counter())
		if err != nil {
			t.Fatalf("second Register: %v; want the first collector reused", err)
		}
		if second != first {
			t.Fatal("second Register returned a new collector; want the one registered first")
		}
		second.Inc()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if v := families[0].GetMetric()[0].GetCounter().GetValue(); v != 1 {
			t.Fatalf("counter = %v after one Inc through the reused collector; want 1", v)
		}
	})

	t.Run("conflicting collector is an error", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		if _, err := collector.Register(reg, counter()); err != nil {
			t.Fatal(err)
		}
		other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prereg_test_total", Help: "A test counter."}, []string{"kind"})
		_, err := collector.Register(reg, other)
		if err == nil {
			t.Fatal("Register of another collector under the same name succeeded; want an error")
		}
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			t.Fatalf("err = %v; want the registry's conflict error, not AlreadyRegisteredError", err)
		}
	})

	t.Run("same description of another type is an error", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		if _, err := collector.Register(reg, counter()); err != nil {
			t.Fatal(err)
		}
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "prereg_test_total", Help: "A test counter."})
		if _, err := collector.Register(reg, g); err == nil {
			t.Fatal("Register of a gauge over a counter's description succeeded; want an error")
		}
	})
}
