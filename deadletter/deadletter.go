// Package deadletter is the record of messages a stage could not turn into
// a decision: what verify and dedupe write before they terminate such a
// message, and what an operator lists and re-drives (docs/STREAMS.md,
// "Dead letters"). The stages declare their own port (Record); postgres
// stores the letters.
package deadletter

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/collector"
	"github.com/prereg/prereg/stream"
)

// Reasons a message is dead-lettered: a short, bounded set, the values of
// the metric's reason label.
const (
	// ReasonUndecodable is a body that is not a message of its stream.
	ReasonUndecodable = "undecodable"
	// ReasonNoReceipt is a message that names no receipt: not a 202'd intent.
	ReasonNoReceipt = "no_receipt"
	// ReasonNoCampaign is an outcome for a campaign that is not loaded.
	ReasonNoCampaign = "campaign_not_loaded"
	// ReasonMalformedSubject is a message on a subject without a shard.
	ReasonMalformedSubject = "malformed_subject"
	// ReasonUnrecordable is an outcome whose unprocessable decision could
	// not be recorded either.
	ReasonUnrecordable = "unrecordable"
)

// The columns' limits: a message is recorded whatever its headers hold,
// so that a long one cannot keep it from being recorded forever.
const (
	maxSubject = 256
	maxMsgID   = 128
	maxDetail  = 512
)

// truncate cuts s to n bytes of valid UTF-8 (PostgreSQL's text refuses
// anything else).
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// Letter is one dead letter. Payload is kept only for the verified stream,
// whose outcomes hold no raw personal data; a submitted intent may hold an
// identity token, so of it only PayloadSHA256 and PayloadLen are kept.
type Letter struct {
	ID            int64      `json:"id"`
	Stream        string     `json:"stream"`
	Subject       string     `json:"subject"`
	StreamSeq     uint64     `json:"stream_seq"`
	MsgID         string     `json:"msg_id,omitempty"`
	Reason        string     `json:"reason"`
	Detail        string     `json:"detail,omitempty"`
	Payload       []byte     `json:"-"` // for a re-drive only, never listed
	PayloadSHA256 []byte     `json:"payload_sha256"`
	PayloadLen    int        `json:"payload_len"`
	FirstSeenAt   time.Time  `json:"first_seen_at"`
	RedrivenAt    *time.Time `json:"redriven_at,omitempty"`
}

// New builds the letter of a message of streamName. cause must not quote
// the message's content: the stages' decode errors say where a body
// failed, never what it held (stream.Decode).
func New(streamName string, m jetstream.Msg, reason string, cause error, now time.Time) Letter {
	data := m.Data()
	sum := sha256.Sum256(data)
	l := Letter{
		Stream:        streamName,
		Subject:       truncate(m.Subject(), maxSubject),
		Reason:        reason,
		PayloadSHA256: sum[:],
		PayloadLen:    len(data),
		FirstSeenAt:   now.UTC(),
	}
	if h := m.Headers(); h != nil {
		l.MsgID = truncate(h.Get(jetstream.MsgIDHeader), maxMsgID)
	}
	if md, err := m.Metadata(); err == nil {
		l.StreamSeq = md.Sequence.Stream
	}
	if cause != nil {
		l.Detail = truncate(cause.Error(), maxDetail)
	}
	if streamName == stream.Verified {
		l.Payload = append([]byte(nil), data...)
	}
	return l
}

// Counter returns prereg_dead_letters_total{stream,reason}, registered in
// reg (the one already there when another stage registered it).
func Counter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prereg_dead_letters_total",
		Help: "Messages recorded as dead letters and terminated, by stream and reason.",
	}, []string{"stream", "reason"})
	if reg == nil {
		return c, nil
	}
	return collector.Register(reg, c)
}

// Store is what listing and re-driving need of the letters' store.
type Store interface {
	List(ctx context.Context, streamName string, limit int) ([]Letter, error)
	Get(ctx context.Context, id int64) (Letter, error)
	// MarkRedriven sets redriven_at once; prereg.ErrConflict when it was set.
	MarkRedriven(ctx context.Context, id int64, at time.Time) error
}

// Publisher publishes a re-driven message (a jetstream.JetStream).
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Redrive publishes a verified-stream letter's payload to its original
// subject under its original Nats-Msg-Id, and marks it re-driven. A
// submitted-stream letter has no payload to publish (it may have held an
// identity token, so none was kept): the person submits again instead.
// Dedupe decides by receipt, so an outcome published twice is decided once.
func Redrive(ctx context.Context, store Store, js Publisher, id int64, now time.Time) (Letter, error) {
	l, err := store.Get(ctx, id)
	if err != nil {
		return Letter{}, err
	}
	switch {
	case l.Stream != stream.Verified:
		return l, prereg.Conflict(fmt.Sprintf("dead letter %d cannot be re-driven: a %s message's payload is not kept (it may hold an identity token); the submission must be made again", id, l.Stream))
	case l.RedrivenAt != nil:
		return l, prereg.Conflict(fmt.Sprintf("dead letter %d was re-driven at %s", id, l.RedrivenAt.UTC().Format(time.RFC3339)))
	}
	msg := nats.NewMsg(l.Subject)
	msg.Data = l.Payload
	if l.MsgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, l.MsgID)
	}
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return l, fmt.Errorf("re-drive dead letter %d: %w", id, err)
	}
	if ack.Duplicate {
		return l, prereg.Conflict(fmt.Sprintf("dead letter %d: the stream still holds its message within its duplicate window; try again in a few minutes", id))
	}
	if err := store.MarkRedriven(ctx, id, now); err != nil {
		return l, err
	}
	at := now.UTC()
	l.RedrivenAt = &at
	return l, nil
}
