package intake_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// noDeviceLimit lets one device retry as often as a test needs.
func noDeviceLimit(c *intake.Config) { c.DeviceRate = -1 }

// submitted is the submitted stream's messages, decoded.
func submitted(tb testing.TB, js jetstream.JetStream) []prereg.Intent {
	tb.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream.Submitted)
	require.NoError(tb, err)
	info, err := st.Info(ctx)
	require.NoError(tb, err)
	var out []prereg.Intent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || m.Subject == probeSubject {
			continue // consumed, or passDuplicateWindow's
		}
		var in prereg.Intent
		require.NoError(tb, stream.Decode(m.Data, &in))
		out = append(out, in)
	}
	return out
}

// probeSubject is a subject of the submitted stream that no intent uses.
var probeSubject = stream.SubmittedSubject(1 << 20)

// passDuplicateWindow returns once the submitted stream's duplicate
// window has passed since it was called: the stream itself says so, by
// taking again a message id it dropped as a duplicate until then.
func passDuplicateWindow(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	id := rand.Text()
	ctx := context.Background()
	_, err := js.Publish(ctx, probeSubject, []byte("probe"), jetstream.WithMsgID(id))
	require.NoError(tb, err)
	require.Eventually(tb, func() bool {
		ack, err := js.Publish(ctx, probeSubject, []byte("probe"), jetstream.WithMsgID(id))
		return err == nil && !ack.Duplicate
	}, 20*time.Second, 20*time.Millisecond, "the duplicate window did not pass")
}

// consumeAll acknowledges every submitted message, as verify does: the
// work queue then holds nothing to read back.
func consumeAll(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	ctx := context.Background()
	c, err := js.CreateOrUpdateConsumer(ctx, stream.Submitted, jetstream.ConsumerConfig{Durable: "test-verify", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(tb, err)
	batch, err := c.FetchNoWait(100)
	require.NoError(tb, err)
	n := 0
	for m := range batch.Messages() {
		require.NoError(tb, m.DoubleAck(ctx))
		n++
	}
	require.NoError(tb, batch.Error())
	require.Positive(tb, n)
	require.NoError(tb, js.DeleteConsumer(ctx, stream.Submitted, "test-verify"))
}

func TestIdempotencyKeyReusedAfterVerifyConsumed(t *testing.T) {
	t.Parallel()
	e := setup(t, noDeviceLimit)
	first := e.post(t, body(nil), "Idempotency-Key", "form-1")
	require.Equal(t, 202, first.Status, "%v", first.Body)
	consumeAll(t, e.js.JS)

	other := e.post(t, body(map[string]any{"identity_token": "someone-else", "phone": "010-9999-0000"}), "Idempotency-Key", "form-1")
	require.Equal(t, 422, other.Status, "another body under the same key, after verify took the first")
	require.Equal(t, "idempotency_key_reused", other.Body["error"])
	require.Empty(t, submitted(t, e.js.JS), "the other body never reaches the stream")

	again := e.post(t, body(nil), "Idempotency-Key", "form-1")
	require.Equal(t, 202, again.Status)
	require.Equal(t, first.Body["receipt"], again.Body["receipt"])
}

func TestIdempotencyKeyAcrossDuplicateWindowAndReplicas(t *testing.T) {
	t.Parallel()
	js := streamtest.New(t, stream.Config{DuplicateWindow: 300 * time.Millisecond})
	a := setupOn(t, js, noDeviceLimit)
	b := setupOn(t, js, noDeviceLimit)
	other := body(map[string]any{"identity_token": "someone-else", "phone": "010-9999-0000"})

	first := a.post(t, body(nil), "Idempotency-Key", "form-1")
	require.Equal(t, 202, first.Status, "%v", first.Body)
	receipt := first.Body["receipt"].(string)
	got := b.post(t, other, "Idempotency-Key", "form-1")
	require.Equal(t, 422, got.Status, "another replica knows the first body")

	// Past the duplicate window the stream no longer drops a retry.
	passDuplicateWindow(t, js.JS)
	for _, e := range []*env{a, b} {
		got := e.post(t, other, "Idempotency-Key", "form-1")
		require.Equal(t, 422, got.Status, "past the duplicate window too")
		require.Equal(t, "idempotency_key_reused", got.Body["error"])
	}
	// The same body is a retry: the same receipt, published again (dedupe
	// keeps the first decision of a receipt).
	again := b.post(t, body(nil), "Idempotency-Key", "form-1")
	require.Equal(t, 202, again.Status)
	require.Equal(t, receipt, again.Body["receipt"])
	intents := submitted(t, js.JS)
	require.Len(t, intents, 2)
	for _, in := range intents {
		require.Equal(t, receipt, in.Receipt)
		require.Equal(t, "tok-abc.def", in.IdentityToken, "only the first body was published")
	}

	// A submission without a key is untouched by the bucket.
	plain := a.post(t, body(map[string]any{"device_id": "device-2"}))
	require.Equal(t, 202, plain.Status)
	kv, err := js.JS.KeyValue(context.Background(), stream.ReceiptBodies)
	require.NoError(t, err)
	st, err := kv.Status(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 1, st.Values(), "one entry: the idempotent receipt's")
}
