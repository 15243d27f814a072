package intake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reasons for shedding, as the shed metric labels them.
const (
	shedInFlight    = "in_flight"    // publishes in flight at the bound
	shedSlowAcks    = "slow_acks"    // acks slowed down: the bound was lowered
	shedStorageFull = "storage_full" // the stream refused for its limits
	shedUnreachable = "unreachable"  // no connection to JetStream
	shedAckTimeout  = "ack_timeout"  // no ack within the publish timeout
	shedPublish     = "publish_failed"
	shedDraining    = "draining" // shutting down
	shedCPU         = "cpu"      // requests wait too long for a CPU
	// shedIdempotency: the first body of an Idempotency-Key could not be
	// recorded or read (stream.ReceiptBodies unreachable or full).
	shedIdempotency = "idempotency_store"
	shedKeyMissing  = "key_missing" // the campaign's HMAC key is not configured here
)

// errShed is a publish refused or failed in a way that the client should
// retry later: answered 503 with Retry-After.
type errShed struct{ reason string }

func (e *errShed) Error() string { return "intake: shedding: " + e.reason }

// admission bounds the publishes in flight and lowers the bound in
// proportion when acks slow down past the target, so that a slow or full JetStream turns into quick 503s instead
// of goroutines, memory and latency piling up. The ack latency is an
// exponentially weighted moving average of the admitted publishes, so it
// keeps being measured (and recovers) while shedding.
type admission struct {
	max      int64
	slow     time.Duration
	inFlight atomic.Int64
	ackEWMA  atomic.Int64 // nanoseconds
	// storageFullUntil is when to try the stream again after it refused a
	// message for its limits (unix nanoseconds).
	storageFullUntil atomic.Int64

	// closing guards wg: once closed, nothing is admitted, so Wait in
	// close never races an Add.
	closing sync.RWMutex
	closed  bool
	wg      sync.WaitGroup
}

// close stops admitting publishes and waits for those in flight.
func (a *admission) close() {
	a.closing.Lock()
	a.closed = true
	a.closing.Unlock()
	a.wg.Wait()
}

// refuses reports whether acquire would refuse now, and why: intake asks
// before reading a body, so that under overload a 503 costs as little as
// possible.
func (a *admission) refuses(now time.Time) (string, bool) {
	if now.UnixNano() < a.storageFullUntil.Load() {
		return shedStorageFull, true
	}
	limit, reason := a.limit()
	return reason, a.inFlight.Load() >= limit
}

func (a *admission) limit() (int64, string) {
	if ewma := a.ackEWMA.Load(); ewma > int64(a.slow) {
		// Acks slower than the target: admit in proportion, so that the
		// publishes in flight (and so the latency) come back down to it.
		return max(1, a.max*int64(a.slow)/ewma), shedSlowAcks
	}
	return a.max, shedInFlight
}

// acquire admits one publish or says why not. release must follow an
// admitted publish.
func (a *admission) acquire(now time.Time) (string, bool) {
	if now.UnixNano() < a.storageFullUntil.Load() {
		return shedStorageFull, false
	}
	limit, reason := a.limit()
	if a.inFlight.Add(1) > limit {
		a.inFlight.Add(-1)
		return reason, false
	}
	a.closing.RLock()
	defer a.closing.RUnlock()
	if a.closed {
		a.inFlight.Add(-1)
		return shedDraining, false
	}
	a.wg.Add(1)
	return "", true
}

func (a *admission) release(took time.Duration) {
	old := a.ackEWMA.Load()
	a.ackEWMA.Store(old + (int64(took)-old)/8)
	a.inFlight.Add(-1)
	a.wg.Done()
}

// publish sends one message and waits for the stream's ack, at most
// PublishTimeout. The client's going away does not cancel a publish under
// way: once sent, it either lands in the stream or not, and Stop waits
// for it; so it takes no context.
func (s *Service) publish(msg *nats.Msg) (*jetstream.PubAck, error) {
	if s.cfg.Conn != nil && !s.cfg.Conn.IsConnected() {
		return nil, &errShed{shedUnreachable}
	}
	start := time.Now()
	if reason, ok := s.adm.acquire(s.now()); !ok {
		return nil, &errShed{reason}
	}
	s.m.inFlight.Inc()
	var ack *jetstream.PubAck
	var err error
	if s.group != nil {
		ack, err = s.group.publish(msg)
	} else {
		ack, err = publishMsg(s.cfg.JetStream.Conn(), msg, s.cfg.PublishTimeout)
	}
	took := time.Since(start)
	s.m.inFlight.Dec()
	s.adm.release(took)
	s.m.publish.Observe(took.Seconds())
	if err != nil {
		return nil, s.classify(err)
	}
	return ack, nil
}

// pubAckResponse is JetStream's answer to a publish: an ack or an error.
type pubAckResponse struct {
	Error *jetstream.APIError `json:"error,omitempty"`
	*jetstream.PubAck
}

func (r *pubAckResponse) apiError() *jetstream.APIError { return r.Error }

// publishMsg is jetstream.PublishMsg without retries, with the ack read by
// go-json: encoding/json's reading of the ack was a twentieth of intake's
// CPU per 202. It waits with a timeout rather than a context (nats.go
// pools the timers of the one, a context allocates its own). Errors are
// the ones PublishMsg returns (an *APIError for what the stream refused).
func publishMsg(nc *nats.Conn, msg *nats.Msg, timeout time.Duration) (*jetstream.PubAck, error) {
	var ack pubAckResponse
	if err := requestAck(nc, msg, timeout, &ack); err != nil {
		return nil, err
	}
	if ack.PubAck == nil || ack.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return ack.PubAck, nil
}

// requestAck sends msg, waits at most timeout for JetStream's answer and
// decodes it into ack, an ack type with JetStream's error field.
func requestAck(nc *nats.Conn, msg *nats.Msg, timeout time.Duration, ack interface{ apiError() *jetstream.APIError }) error {
	resp, err := nc.RequestMsg(msg, timeout)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return jetstream.ErrNoStreamResponse
		}
		return err
	}
	if err := gojson.Unmarshal(resp.Data, ack); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if e := ack.apiError(); e != nil {
		return fmt.Errorf("nats: %w", e)
	}
	return nil
}

// classify turns a publish error into the shedding reason the client sees.
func (s *Service) classify(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && storageLimit(apiErr):
		s.adm.storageFullUntil.Store(s.now().Add(s.cfg.RetryAfter).UnixNano())
		return &errShed{shedStorageFull}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return &errShed{shedAckTimeout}
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return &errShed{shedUnreachable}
	}
	return &errShed{shedPublish}
}

// storageLimit reports whether JetStream refused a message because the
// stream (DiscardNew at MaxBytes or MaxMsgs) or the account's or server's
// storage is full.
func storageLimit(e *jetstream.APIError) bool {
	const (
		insufficientResources = 10023
		storeFailed           = 10077
		accountStorageMax     = 10047
	)
	switch e.ErrorCode {
	case insufficientResources, accountStorageMax:
		return true
	case storeFailed:
		d := strings.ToLower(e.Description)
		return strings.Contains(d, "maximum") || strings.Contains(d, "resources") || strings.Contains(d, "storage")
	}
	return false
}
