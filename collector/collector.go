// Package collector registers a stage's Prometheus collectors so that
// several instances of a stage in one process share their series.
package collector

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns the collector to use: c itself,
// or the collector of the same type already registered under the same
// description (a second worker of a stage in one process then adds to the
// first one's series instead of failing). Any other failure, such as a
// collector of another type or other labels under the same name, is
// returned.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}
