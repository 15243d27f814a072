package dedupe_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// publishOutcome publishes one outcome as verify would: on its shard,
// under its receipt.
func publishOutcome(tb testing.TB, js jetstream.JetStream, subject, receipt string, data []byte) {
	tb.Helper()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if receipt != "" {
		msg.Header.Set(jetstream.MsgIDHeader, receipt)
	}
	_, err := js.PublishMsg(context.Background(), msg)
	require.NoError(tb, err)
}

// TestDedupeDeadLettersRoundTrip: a message dedupe cannot decide (one
// without a receipt that does not decode, one for a campaign that is not
// loaded) ends as a dead letter, is terminated, and is counted. Once the
// campaign is loaded, the re-driven outcome becomes a decision.
func TestDedupeDeadLettersRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	// A short duplicate window: the re-drive republishes under the same
	// Nats-Msg-Id, which the stream would otherwise drop as a duplicate.
	e.js = streamtest.New(t, stream.Config{VerifiedDuplicateWindow: time.Second})
	late, err := campaign.Parse(fmt.Appendf(nil, testCampaignYAML, 2, 4, 10), "")
	require.NoError(t, err)
	o := newWorld(late, 5, 1).outcomes[0]
	data, err := stream.Encode(o)
	require.NoError(t, err)
	publishOutcome(t, e.js.JS, stream.VerifiedSubject(prereg.Shard(o.IdentityKey, late.Shards)), o.Receipt, data)
	publishOutcome(t, e.js.JS, stream.VerifiedSubject(0), "", []byte("{not json"))

	letters := &postgres.DeadLetterStore{Pool: e.db.Pool}
	reg := prometheusRegistry()
	e.startWorker(t, e.js.JS, dedupe.Config{Registerer: reg, MaxDeliver: 2, CampaignTTL: 50 * time.Millisecond, DeadLetters: letters})
	var got []deadletter.Letter
	require.Eventually(t, func() bool {
		got, err = letters.List(ctx, "", 10)
		require.NoError(t, err)
		return len(got) == 2
	}, 20*time.Second, 50*time.Millisecond, "both messages dead-lettered")
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "prereg_dedupe_terminated_total") == 2
	}, 5*time.Second, 20*time.Millisecond, "terminated after they were recorded")
	require.Equal(t, 2.0, counterValue(t, reg, "prereg_dead_letters_total"))

	byReason := map[string]deadletter.Letter{}
	for _, l := range got {
		require.Equal(t, stream.Verified, l.Stream)
		require.Nil(t, l.RedrivenAt)
		byReason[l.Reason] = l
	}
	unread := byReason[deadletter.ReasonNoReceipt]
	require.Equal(t, len("{not json"), unread.PayloadLen)
	require.NotContains(t, unread.Detail, "not json", "the detail never quotes the payload")
	missing := byReason[deadletter.ReasonNoCampaign]
	require.Equal(t, o.Receipt, missing.MsgID)
	full, err := letters.Get(ctx, missing.ID)
	require.NoError(t, err)
	require.Equal(t, data, full.Payload, "a verified outcome's payload is kept for a re-drive")

	_, err = e.campaigns.Load(ctx, late)
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond) // past the duplicate window
	l, err := deadletter.Redrive(ctx, letters, e.js.JS, missing.ID, time.Now())
	require.NoError(t, err)
	require.NotNil(t, l.RedrivenAt)
	e.waitDecisions(t, late.ID, 1)
	require.Equal(t, prereg.VerdictVerified, o.Verdict)
	require.Contains(t, e.decisions(t, late.ID), o.Receipt)

	_, err = deadletter.Redrive(ctx, letters, e.js.JS, missing.ID, time.Now())
	require.ErrorIs(t, err, prereg.ErrConflict, "a letter is re-driven once")
	_, err = deadletter.Redrive(ctx, letters, e.js.JS, 1<<40, time.Now())
	require.ErrorIs(t, err, prereg.ErrNotFound)
}

// flakyLetters is a dead-letter store whose database is down until up.
type flakyLetters struct {
	mu      sync.Mutex
	up      bool
	tries   int
	letters []deadletter.Letter
}

func (f *flakyLetters) Record(_ context.Context, l deadletter.Letter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	if !f.up {
		return fmt.Errorf("record dead letter: %w", syscall.ECONNREFUSED)
	}
	f.letters = append(f.letters, l)
	return nil
}

func (f *flakyLetters) state() (tries, recorded int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries, len(f.letters)
}

// TestDedupeHoldsPoisonWhileDeadLettersDown: while the dead letter cannot
// be recorded for want of the database, the message is not terminated; it
// is once the record succeeds.
func TestDedupeHoldsPoisonWhileDeadLettersDown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	publishOutcome(t, e.js.JS, stream.VerifiedSubject(0), "", []byte("{not json"))
	letters := &flakyLetters{}
	reg := prometheusRegistry()
	e.startWorker(t, e.js.JS, dedupe.Config{Registerer: reg, MaxDeliver: 2, DeadLetters: letters})
	require.Eventually(t, func() bool {
		tries, _ := letters.state()
		return tries >= 2
	}, 20*time.Second, 20*time.Millisecond, "the record is tried again")
	require.Zero(t, counterValue(t, reg, "prereg_dedupe_terminated_total"), "nothing terminated while the record fails")

	letters.mu.Lock()
	letters.up = true
	letters.mu.Unlock()
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "prereg_dedupe_terminated_total") == 1
	}, 30*time.Second, 20*time.Millisecond, "terminated once recorded")
	_, recorded := letters.state()
	require.Equal(t, 1, recorded)
}
