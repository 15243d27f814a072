package dedupe_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/stream"
)

// TestDedupeSurvivesDeletedConsumer: the consumer is deleted under a
// running worker (an operator's mistake, a lost replica). The worker
// declares it again by itself and decides what arrives after.
func TestDedupeSurvivesDeletedConsumer(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := loadCampaign(t, e.campaigns, 2, 4, 100)
	first := newWorld(c, 53, 40)
	first.publish(t, e.js.JS)
	e.startWorker(t, e.js.JS, dedupe.Config{BatchSize: 20})
	e.waitDecisions(t, c.ID, len(first.outcomes))

	require.NoError(t, e.js.JS.DeleteConsumer(context.Background(), stream.Verified, dedupe.DurableName(nil)))
	second := newWorld(c, 59, 40)
	second.publish(t, e.js.JS)
	e.waitDecisions(t, c.ID, len(first.outcomes)+len(second.outcomes))
}

// TestDedupeDecidesMalformedOutcome: an outcome whose body does not
// decode, but whose Nats-Msg-Id names its receipt and whose campaign can
// be read, ends as a recorded decision (rejected, unprocessable), not as
// a submission that stays "received" for ever.
func TestDedupeDecidesMalformedOutcome(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := loadCampaign(t, e.campaigns, 2, 4, 100)
	msg := &nats.Msg{
		Subject: stream.VerifiedSubject(1),
		// A verdict of the wrong type: the body is JSON, the outcome is not.
		Data:   []byte(`{"receipt":"r-bad","campaign":"` + c.ID + `","window":"d9","verdict":7}`),
		Header: nats.Header{},
	}
	msg.Header.Set(jetstream.MsgIDHeader, "r-bad")
	_, err := e.js.JS.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	e.startWorker(t, e.js.JS, dedupe.Config{})
	e.waitDecisions(t, c.ID, 1)
	d := e.decisions(t, c.ID)["r-bad"]
	require.Equal(t, decided{Kind: prereg.KindRejected, Reason: prereg.ReasonUnprocessable}, d)
}
