package stream

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// TestKeepStronger: replicas, ages, byte bounds and windows only ever go
// up, whichever side asks for more.
func TestKeepStronger(t *testing.T) {
	t.Parallel()
	base := SubmittedConfig(Config{})
	cases := []struct {
		name       string
		live, want func(*jetstream.StreamConfig)
		check      func(t *testing.T, got jetstream.StreamConfig)
		diffs      int
	}{
		{"same", func(*jetstream.StreamConfig) {}, func(*jetstream.StreamConfig) {}, func(t *testing.T, got jetstream.StreamConfig) {
			require.Equal(t, base, got)
		}, 0},
		{"three replicas live, one configured", func(c *jetstream.StreamConfig) { c.Replicas = 3 }, func(*jetstream.StreamConfig) {}, func(t *testing.T, got jetstream.StreamConfig) {
			require.Equal(t, 3, got.Replicas)
		}, 1},
		{"three replicas configured", func(*jetstream.StreamConfig) {}, func(c *jetstream.StreamConfig) { c.Replicas = 3 }, func(t *testing.T, got jetstream.StreamConfig) {
			require.Equal(t, 3, got.Replicas)
		}, 1},
		{"no age limit live", func(c *jetstream.StreamConfig) { c.MaxAge = 0 }, func(*jetstream.StreamConfig) {}, func(t *testing.T, got jetstream.StreamConfig) {
			require.Zero(t, got.MaxAge)
		}, 1},
		{"unlimited bytes live", func(c *jetstream.StreamConfig) { c.MaxBytes = -1 }, func(*jetstream.StreamConfig) {}, func(t *testing.T, got jetstream.StreamConfig) {
			require.EqualValues(t, -1, got.MaxBytes)
		}, 1},
		{"more bytes configured", func(*jetstream.StreamConfig) {}, func(c *jetstream.StreamConfig) { c.MaxBytes = 32 << 30 }, func(t *testing.T, got jetstream.StreamConfig) {
			require.EqualValues(t, 32<<30, got.MaxBytes)
		}, 1},
		{"narrower window configured", func(*jetstream.StreamConfig) {}, func(c *jetstream.StreamConfig) { c.Duplicates = 5 * time.Second }, func(t *testing.T, got jetstream.StreamConfig) {
			require.Equal(t, 20*time.Second, got.Duplicates)
		}, 1},
		{"atomic batches stay allowed", func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = true }, func(*jetstream.StreamConfig) {}, func(t *testing.T, got jetstream.StreamConfig) {
			require.True(t, got.AllowAtomicPublish)
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			live, want := base, base
			c.live(&live)
			c.want(&want)
			got, diffs, err := keepStronger(live, want)
			require.NoError(t, err)
			c.check(t, got)
			require.Len(t, diffs, c.diffs)
		})
	}
}
