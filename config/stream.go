package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Stream are the streams' settings (docs/STREAMS.md says when to raise
// each); app hands them to stream.Config. Zero fields keep stream's
// defaults, and a live stream stronger than these keeps its own settings
// (stream.Declare).
type Stream struct {
	Replicas                int
	SubmittedMaxAge         time.Duration
	SubmittedMaxBytes       int64
	DuplicateWindow         time.Duration
	VerifiedDuplicateWindow time.Duration
	VerifiedMaxAge          time.Duration
}

func streamReplicas(c *Config, v string) error {
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 5 {
		return fmt.Errorf("want 1 to 5 (JetStream's limit), got %q", v)
	}
	c.Stream.Replicas = n
	return nil
}

// streamAge parses a positive duration with days ("7d") into the field
// that at picks.
func streamAge(at func(*Stream) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		d, err := parseDays(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 20s, 12h or 7d, got %q", v)
		}
		*at(&c.Stream) = d
		return nil
	}
}

func streamMaxBytes(c *Config, v string) error {
	if v == "" {
		return nil
	}
	n, err := parseBytes(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a size such as 8GiB or 500MiB, got %q", v)
	}
	c.Stream.SubmittedMaxBytes = n
	return nil
}

// parseDays is time.ParseDuration with days ("7d") as well: stream ages
// are counted in days.
func parseDays(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// parseBytes reads a size in bytes, with an optional binary unit (KiB,
// MiB, GiB, TiB).
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil {
				return 0, err
			}
			if n > (1<<62)>>u.shift {
				return 0, errors.New("too large")
			}
			return n << u.shift, nil
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
