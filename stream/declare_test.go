package stream_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeclareNeverWeakensAStream: an operator raises the submitted
// stream's maximum age and adds a limit prereg does not declare; a restart
// with the default configuration keeps both and says so, a configuration
// that asks for more raises the stream, and declaring again changes
// nothing.
func TestDeclareNeverWeakensAStream(t *testing.T) {
	t.Parallel()
	srv := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	info := func() jetstream.StreamConfig {
		t.Helper()
		s, err := srv.JS.Stream(ctx, stream.Submitted)
		require.NoError(t, err)
		return s.CachedInfo().Config
	}

	// The operator's changes, as `nats stream edit` makes them.
	cfg := info()
	cfg.MaxAge = 14 * 24 * time.Hour
	cfg.Duplicates = time.Minute
	cfg.MaxMsgs = 50_000_000
	_, err := srv.JS.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	require.NoError(t, stream.Declare(ctx, srv.JS, stream.Config{Logger: log}))
	got := info()
	require.Equal(t, 14*24*time.Hour, got.MaxAge, "the operator's longer age is kept")
	require.Equal(t, time.Minute, got.Duplicates, "the operator's wider window is kept")
	require.EqualValues(t, 50_000_000, got.MaxMsgs, "a limit prereg does not declare is left alone")
	require.Contains(t, logs.String(), "setting=max_age configured=168h0m0s live=336h0m0s kept=336h0m0s")
	require.Contains(t, logs.String(), "setting=duplicate_window")

	require.NoError(t, stream.Declare(ctx, srv.JS, stream.Config{SubmittedMaxAge: 21 * 24 * time.Hour, SubmittedMaxBytes: 16 << 30}))
	got = info()
	require.Equal(t, 21*24*time.Hour, got.MaxAge, "a stronger configuration raises the stream")
	require.EqualValues(t, 16<<30, got.MaxBytes)
	require.EqualValues(t, 50_000_000, got.MaxMsgs)

	before := info()
	require.NoError(t, stream.Declare(ctx, srv.JS, stream.Config{}))
	require.Equal(t, before, info(), "declaring again changes nothing")
}

// TestDeclareRefusesAnIncompatibleStream: a stream of the same name with
// another retention cannot be turned into prereg's in place.
func TestDeclareRefusesAnIncompatibleStream(t *testing.T) {
	t.Parallel()
	srv := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	require.NoError(t, srv.JS.DeleteStream(ctx, stream.Submitted))
	sc := stream.SubmittedConfig(stream.Config{})
	sc.Retention = jetstream.LimitsPolicy
	_, err := srv.JS.CreateStream(ctx, sc)
	require.NoError(t, err)
	err = stream.Declare(ctx, srv.JS, stream.Config{})
	require.ErrorContains(t, err, "retention is Limits, prereg needs WorkQueue")
}
