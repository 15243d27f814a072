package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// TestLagShowsAStageFallingBehind: intents wait for a consumer that takes
// one and leaves it unacknowledged; the gauges say how many wait, how many
// are in work, and how old the oldest unverified intent is.
func TestLagShowsAStageFallingBehind(t *testing.T) {
	t.Parallel()
	srv := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	for range 5 {
		_, err := srv.JS.Publish(ctx, stream.SubmittedSubject(0), []byte("{}"))
		require.NoError(t, err)
	}
	cons, err := srv.JS.CreateOrUpdateConsumer(ctx, stream.Submitted, jetstream.ConsumerConfig{Durable: "verify", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for range batch.Messages() {
	}
	time.Sleep(1100 * time.Millisecond)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(stream.NewLag(srv.JS)))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += " " + l.GetName() + "=" + l.GetValue()
			}
			got[k] = m.GetGauge().GetValue()
		}
	}
	require.Equal(t, 4.0, got["prereg_consumer_pending_messages consumer=verify stream=INTENTS_SUBMITTED"], "%v", got)
	require.Equal(t, 1.0, got["prereg_consumer_ack_pending_messages consumer=verify stream=INTENTS_SUBMITTED"])
	require.Equal(t, 5.0, got["prereg_stream_messages stream=INTENTS_SUBMITTED"])
	require.Equal(t, 1.0, got["prereg_stream_info_up stream=INTENTS_SUBMITTED"])
	require.Equal(t, (7 * 24 * time.Hour).Seconds(), got["prereg_stream_max_age_seconds stream=INTENTS_SUBMITTED"])
	age := got["prereg_stream_oldest_message_age_seconds stream=INTENTS_SUBMITTED"]
	require.GreaterOrEqual(t, age, 1.0, "the oldest unverified intent is over a second old")
	require.Less(t, age, 60.0)
	require.Zero(t, got["prereg_stream_oldest_message_age_seconds stream=INTENTS_VERIFIED"], "an empty stream has no oldest message")
}
