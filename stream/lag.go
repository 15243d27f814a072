package stream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Lag is a Prometheus collector of how far behind each stage is: per
// consumer of the two streams, the messages not yet delivered and those
// delivered and not yet acknowledged; per stream, its messages and the age
// of its oldest. On the submitted stream (a work queue) the oldest message
// is the oldest intent not yet verified: alert well before its age reaches
// the stream's maximum age, past which JetStream deletes it unverified
// (docs/STREAMS.md). It asks JetStream at every scrape.
type Lag struct {
	js      jetstream.JetStream
	now     func() time.Time
	timeout time.Duration

	pending, ackPending, messages, oldest, maxAge, up *prometheus.Desc
}

// NewLag returns the collector for the streams on js.
func NewLag(js jetstream.JetStream) *Lag {
	sc := []string{"stream", "consumer"}
	s := []string{"stream"}
	return &Lag{
		js:      js,
		now:     time.Now,
		timeout: 2 * time.Second,
		pending: prometheus.NewDesc("prereg_consumer_pending_messages",
			"Messages of the stream the consumer has not been delivered yet.", sc, nil),
		ackPending: prometheus.NewDesc("prereg_consumer_ack_pending_messages",
			"Messages delivered to the consumer and not yet acknowledged (in work, or waiting on a NAK delay).", sc, nil),
		messages: prometheus.NewDesc("prereg_stream_messages",
			"Messages in the stream.", s, nil),
		oldest: prometheus.NewDesc("prereg_stream_oldest_message_age_seconds",
			"Age of the stream's oldest message (0 when empty); on INTENTS_SUBMITTED, the oldest intent not yet verified.", s, nil),
		maxAge: prometheus.NewDesc("prereg_stream_max_age_seconds",
			"The stream's maximum age (0: none): a message older is deleted.", s, nil),
		up: prometheus.NewDesc("prereg_stream_info_up",
			"1 when the stream's information could be read at this scrape.", s, nil),
	}
}

// Describe sends the collector's descriptions.
func (l *Lag) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l.pending, l.ackPending, l.messages, l.oldest, l.maxAge, l.up} {
		ch <- d
	}
}

// Collect asks JetStream for the streams and their consumers.
func (l *Lag) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	for _, name := range []string{Submitted, Verified} {
		s, err := l.js.Stream(ctx, name)
		if err != nil {
			ch <- prometheus.MustNewConstMetric(l.up, prometheus.GaugeValue, 0, name)
			continue
		}
		info := s.CachedInfo()
		ch <- prometheus.MustNewConstMetric(l.up, prometheus.GaugeValue, 1, name)
		ch <- prometheus.MustNewConstMetric(l.messages, prometheus.GaugeValue, float64(info.State.Msgs), name)
		var age float64
		if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
			age = max(0, l.now().Sub(info.State.FirstTime).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(l.oldest, prometheus.GaugeValue, age, name)
		ch <- prometheus.MustNewConstMetric(l.maxAge, prometheus.GaugeValue, info.Config.MaxAge.Seconds(), name)
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			ch <- prometheus.MustNewConstMetric(l.pending, prometheus.GaugeValue, float64(ci.NumPending), name, ci.Name)
			ch <- prometheus.MustNewConstMetric(l.ackPending, prometheus.GaugeValue, float64(ci.NumAckPending), name, ci.Name)
		}
	}
}
