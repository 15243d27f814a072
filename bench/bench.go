// Package bench holds prereg's whole-system benchmarks (intake, verify,
// dedupe, allocate, notify), the reference servers and clients they are
// measured against (a bare handler, the naive INSERT-per-request design, a
// bare provider or gateway client, a PostgreSQL COPY) and their load
// generators. Each benchmark runs prereg the way `prereg serve` does, built
// through app, on a scratch database and a JetStream of its own; `prereg
// bench …` parses the flags and prints the results.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/keys"
)

// Setup is what every benchmark takes from the command that runs it.
type Setup struct {
	Logger *slog.Logger
	// Progress takes the benchmark's progress lines; nil: none.
	Progress io.Writer
	// Stderr takes the logs of the server processes a benchmark starts;
	// nil: they are discarded.
	Stderr io.Writer
	// DatabaseURL names the PostgreSQL server the scratch databases are
	// created on (empty: the local server, else a private cluster).
	DatabaseURL string
	// NATS connects to JetStream (NATS_URL, else an embedded server); the
	// returned function closes it (and stops an embedded server).
	NATS func(context.Context) (*nats.Conn, func(), error)
	// GC is what the configuration says of the collector, for app.TuneGC.
	GC config.GC
}

func (s Setup) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// progress writes one line of progress.
func (s Setup) progress(msg string, a ...any) {
	if s.Progress != nil {
		fmt.Fprintf(s.Progress, msg+"\n", a...)
	}
}

// benchConfig is a configuration with fresh random keys: what app.New needs
// to seal and hash, for a run whose data is thrown away.
func benchConfig() (config.Config, error) {
	hmac, err := keys.ParseKeys("bench:"+keys.Random(32), 32)
	if err != nil {
		return config.Config{}, err
	}
	enc, err := keys.ParseKeys("bench:"+keys.Random(32), 32)
	if err != nil {
		return config.Config{}, err
	}
	return config.Config{HMACKeys: hmac, EncKeys: enc}, nil
}

// StartCPUProfile writes a CPU profile to path until the returned stop is
// called; an empty path profiles nothing.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// WriteHeapProfile writes the live heap (after a collection) to path; an
// empty path writes nothing.
func WriteHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
