package dedupe_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/stream"
)

// TestDedupeSecondMessageSameReceipt: a retry with the same
// Idempotency-Key after the submitted stream's duplicate window is a
// second message under the same receipt; verify checks it again (a
// single-use token now fails) and publishes a second outcome once the
// verified stream's window has passed too. Neither the replayed outcome
// nor the rejected one makes a second decision or a second registration:
// a receipt's first decision stands.
func TestDedupeSecondMessageSameReceipt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := loadCampaign(t, e.campaigns, 4, 4, 200)
	w := newWorld(c, 5, 120)
	w.publish(t, e.js.JS)
	e.startWorker(t, e.js.JS, dedupe.Config{BatchSize: 40})
	before := score(t, e, w)
	regsBefore := e.registrations(t, c.ID)

	ctx := context.Background()
	again := func(o prereg.Outcome) {
		data, err := json.Marshal(o)
		require.NoError(t, err)
		k := o.IdentityKey
		if k == "" {
			k = o.Receipt
		}
		msg := &nats.Msg{Subject: stream.VerifiedSubject(prereg.Shard(k, c.Shards)), Data: data, Header: nats.Header{}}
		// Another message id: the verified stream's own window has passed.
		msg.Header.Set(jetstream.MsgIDHeader, o.Receipt+"/again")
		_, err = e.js.JS.PublishMsg(ctx, msg)
		require.NoError(t, err)
	}
	for i, o := range w.outcomes {
		if i%2 == 1 && o.Verdict == prereg.VerdictVerified {
			o.Verdict, o.Reason, o.IdentityKey, o.DecidedAt = prereg.VerdictRejected, prereg.ReasonInvalidToken, "", o.DecidedAt.Add(time.Minute)
		}
		again(o)
	}
	// A new person after them all: once decided, so are the replays
	// before it in the stream.
	last := w.outcomes[0]
	last.Receipt, last.IdentityKey, last.DeviceKey = "receipt-after-replays", "identity-after-replays", "device-after-replays"
	again(last)
	e.waitDecisions(t, c.ID, len(w.outcomes)+1)

	after := e.decisions(t, c.ID)
	require.Len(t, after, len(w.outcomes)+1, "one decision per receipt")
	for receipt, d := range before {
		require.Equal(t, d, after[receipt], "a receipt's first decision stands")
	}
	regsAfter := e.registrations(t, c.ID)
	require.Len(t, regsAfter, len(regsBefore)+1)
	for k, r := range regsBefore {
		require.Equal(t, r, regsAfter[k], "no second registration")
	}
}
