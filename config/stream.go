package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg/stream"
)

// StreamFromEnv reads the streams' replicas, ages, storage bound and
// duplicate windows (docs/STREAMS.md says when to raise each). Unset
// variables keep stream's defaults. A live stream that is stronger than
// these keeps its own settings (stream.Declare).
//
//	PREREG_STREAM_REPLICAS                   1 (3 in a cluster)
//	PREREG_STREAM_SUBMITTED_MAX_AGE          7d
//	PREREG_STREAM_SUBMITTED_MAX_BYTES        8GiB
//	PREREG_STREAM_DUPLICATE_WINDOW           20s
//	PREREG_STREAM_VERIFIED_DUPLICATE_WINDOW  2m
//	PREREG_STREAM_VERIFIED_MAX_AGE           30d
func StreamFromEnv(getenv Getenv) (stream.Config, error) {
	var c stream.Config
	var errs []error
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	if v := get("PREREG_STREAM_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			errs = append(errs, fmt.Errorf("PREREG_STREAM_REPLICAS: want 1 to 5 (JetStream's limit), got %q", v))
		}
		c.Replicas = n
	}
	durations := []struct {
		name string
		into *time.Duration
	}{
		{"PREREG_STREAM_SUBMITTED_MAX_AGE", &c.SubmittedMaxAge},
		{"PREREG_STREAM_DUPLICATE_WINDOW", &c.DuplicateWindow},
		{"PREREG_STREAM_VERIFIED_DUPLICATE_WINDOW", &c.VerifiedDuplicateWindow},
		{"PREREG_STREAM_VERIFIED_MAX_AGE", &c.VerifiedMaxAge},
	}
	for _, d := range durations {
		v := get(d.name)
		if v == "" {
			continue
		}
		x, err := parseDays(v)
		if err != nil || x <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive duration such as 20s, 12h or 7d, got %q", d.name, v))
			continue
		}
		*d.into = x
	}
	if v := get("PREREG_STREAM_SUBMITTED_MAX_BYTES"); v != "" {
		n, err := parseBytes(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("PREREG_STREAM_SUBMITTED_MAX_BYTES: want a size such as 8GiB or 500MiB, got %q", v))
		}
		c.SubmittedMaxBytes = n
	}
	return c, errors.Join(errs...)
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
