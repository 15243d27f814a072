package verify_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/verify"
)

// startWithDeadLetters runs a Verifier that records dead letters in dl.
func (w *world) startWithDeadLetters(dl verify.DeadLetters, reg prometheus.Registerer) {
	w.tb.Helper()
	nc, err := nats.Connect(w.js.ClientURL())
	require.NoError(w.tb, err)
	js, err := jetstream.New(nc)
	require.NoError(w.tb, err)
	v, err := verify.New(verify.Config{
		JetStream: js, Campaigns: campaigns{campaignID: w.camp},
		Hasher: w.hasher, Sealer: w.sealer, Settings: fastSettings(),
		DeadLetters: dl, Registerer: reg,
	})
	require.NoError(w.tb, err)
	require.NoError(w.tb, v.Start(context.Background()))
	w.tb.Cleanup(func() { v.Stop(); nc.Close() })
}

// poison is a submitted message without receipt whose body holds what
// looks like an identity token.
var poison = []byte(`{"identity_token":"tok-secret-0123456789","campaign":`)

// TestVerifyDeadLettersMessageWithoutReceipt: a message in the submitted
// stream that names no receipt is recorded as a dead letter (its hash and
// length only: it may hold an identity token), then terminated.
func TestVerifyDeadLettersMessageWithoutReceipt(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	db := pgtest.New(t)
	store := &postgres.DeadLetterStore{Pool: db.Pool}
	reg := prometheus.NewRegistry()
	_, err := w.js.JS.Publish(context.Background(), stream.SubmittedSubject(1), poison)
	require.NoError(t, err)
	w.startWithDeadLetters(store, reg)

	var got []deadletter.Letter
	require.Eventually(t, func() bool {
		got, err = store.List(context.Background(), stream.Submitted, 10)
		require.NoError(t, err)
		return len(got) == 1 && w.submittedLeft() == 0
	}, 10*time.Second, 20*time.Millisecond, "recorded, then terminated")
	l, err := store.Get(context.Background(), got[0].ID)
	require.NoError(t, err)
	sum := sha256.Sum256(poison)
	require.Equal(t, deadletter.ReasonNoReceipt, l.Reason)
	require.Equal(t, stream.SubmittedSubject(1), l.Subject)
	require.Equal(t, sum[:], l.PayloadSHA256)
	require.Equal(t, len(poison), l.PayloadLen)
	require.Nil(t, l.Payload, "a submitted message's payload is never kept")
	require.NotContains(t, l.Detail, "tok-secret")
	require.Equal(t, 1.0, deadLetterCount(t, reg, stream.Submitted, deadletter.ReasonNoReceipt))

	_, err = deadletter.Redrive(context.Background(), store, w.js.JS, l.ID, time.Now())
	require.ErrorContains(t, err, "cannot be re-driven")
}

// deadLetterCount reads prereg_dead_letters_total{stream,reason}.
func deadLetterCount(tb testing.TB, reg *prometheus.Registry, streamName, reason string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != "prereg_dead_letters_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["stream"] == streamName && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// downLetters is a dead-letter store whose database is down until up.
type downLetters struct {
	mu       sync.Mutex
	up       bool
	tries    int
	recorded int
}

func (d *downLetters) Record(context.Context, deadletter.Letter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tries++
	if !d.up {
		return fmt.Errorf("record dead letter: %w", syscall.ECONNREFUSED)
	}
	d.recorded++
	return nil
}

func (d *downLetters) state() (tries, recorded int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tries, d.recorded
}

// TestVerifyKeepsPoisonWhileDeadLettersDown: while PostgreSQL cannot take
// the dead letter, the message stays in the stream; once it can, the
// message is recorded and terminated.
func TestVerifyKeepsPoisonWhileDeadLettersDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	dl := &downLetters{}
	_, err := w.js.JS.Publish(context.Background(), stream.SubmittedSubject(2), poison)
	require.NoError(t, err)
	w.startWithDeadLetters(dl, nil)
	require.Eventually(t, func() bool {
		tries, _ := dl.state()
		return tries >= 3
	}, 10*time.Second, 10*time.Millisecond, "the record is tried again")
	require.Equal(t, 1, w.submittedLeft(), "not terminated while the record fails")

	dl.mu.Lock()
	dl.up = true
	dl.mu.Unlock()
	require.Eventually(t, func() bool {
		_, recorded := dl.state()
		return recorded == 1 && w.submittedLeft() == 0
	}, 10*time.Second, 10*time.Millisecond, "recorded, then terminated")
}
