package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/worker"
)

// FeedConfig configures a Feed. JetStream, Stream, Consumer (with a
// Durable name) and Health are required.
type FeedConfig struct {
	JetStream jetstream.JetStream
	Stream    string
	Consumer  jetstream.ConsumerConfig
	Pull      []jetstream.PullMessagesOpt
	// Health learns when JetStream is down and back; it logs each outage
	// once per change of state.
	Health *worker.Health
	// RetryBase and RetryCap shape the backoff between attempts to
	// re-create the consumer (100ms, 10s).
	RetryBase, RetryCap time.Duration
	// Poll is how often Next looks at the connection while no message
	// comes, so that a disconnection is noticed (1s).
	Poll time.Duration
	// Heartbeat is how often the server tells a waiting pull request that
	// it still holds it (5s; the server takes 500ms to 30s). Two missed in
	// a row and the Feed starts over with a new iterator. It must be under
	// half the pull's expiry (30s unless Pull says otherwise).
	Heartbeat time.Duration
}

// Feed is a durable pull consumer's stream of messages that outlives what
// ends a jetstream.MessagesContext: a deleted consumer, missed heartbeats,
// a bad request, a server restart. When the iterator fails, the Feed
// declares the consumer again and opens a new iterator, with backoff,
// until it succeeds or is stopped; unacknowledged messages come back
// after AckWait like any redelivery. Next is for one goroutine; Stop and
// Drain may be called from any.
//
// One goroutine of the Feed's own (the pump) reads the iterator, in one
// call of the iterator's Next that lasts until a message or an error
// comes, and hands each message to Next. It holds at most one message
// that Next has not taken.
//
// Why the pump: nats.go's iterator (jetstream/pull.go, Messages) counts
// the messages its pull requests may still bring and sends a new request
// only when that count falls under half of PullMaxMessages. Two ways the
// server ends up holding no request while the count says otherwise:
//   - a 503 No Responders, when the pull (the one that follows a
//     reconnect, or a threshold pull) reaches no consumer leader: an
//     election, a restarted node that has not restored the consumer. The
//     iterator treats it as a passing status and leaves the count as is
//     (handleStatusMsg resets it only for a leadership change or a pin
//     mismatch).
//   - no answer at all: the node that led the consumer died with the
//     request. A follower that becomes leader answers the requests it had
//     recorded with 409 Leadership Change, which resets the count; one
//     with a single replica, or a follower the record had not reached,
//     has nothing to answer.
//
// From then on the iterator waits, connected and without an error, for
// messages that nobody will send. The only sign is that the server's
// idle heartbeats stop, and the iterator watches for them only inside one
// call of its Next: the timer (twice the heartbeat) is armed when the
// call starts and stopped when it returns, so calls with a NextMaxWait
// shorter than that never see it fire. The pump's call lasts: the timer
// fires, ErrNoHeartbeat comes out (WithMessagesErrOnMissingHeartbeat), and
// the Feed replaces the iterator as for any other failure.
type Feed struct {
	cfg FeedConfig

	// msgs carries each message from the pump to Next; the pump closes it
	// when it returns (Stop, or Drain and nothing left).
	msgs chan jetstream.Msg

	mu      sync.Mutex
	iter    jetstream.MessagesContext // nil while the pump re-creates it
	closing bool                      // Stop or Drain was called
	halted  bool                      // Stop was called
	closed  chan struct{}             // closed by Stop or Drain: ends a backoff wait
	stopped chan struct{}             // closed by Stop: what the pump holds is dropped
}

// OpenFeed declares the consumer and opens its iterator. An error here is
// returned (a process that cannot reach JetStream at start says so); after
// it, the Feed recovers by itself.
func OpenFeed(ctx context.Context, cfg FeedConfig) (*Feed, error) {
	if cfg.JetStream == nil || cfg.Stream == "" || cfg.Consumer.Durable == "" || cfg.Health == nil {
		return nil, errors.New("stream: feed needs JetStream, Stream, a durable Consumer and Health")
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 100 * time.Millisecond
	}
	if cfg.RetryCap <= 0 {
		cfg.RetryCap = 10 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	// Missed heartbeats are reported, not swallowed: the Feed replaces the
	// iterator rather than wait on one whose pull the server forgot. An
	// explicit PullHeartbeat in cfg.Pull comes later and wins.
	cfg.Pull = slices.Concat(
		[]jetstream.PullMessagesOpt{jetstream.PullHeartbeat(cfg.Heartbeat)},
		cfg.Pull,
		[]jetstream.PullMessagesOpt{jetstream.WithMessagesErrOnMissingHeartbeat(true)},
	)
	f := &Feed{cfg: cfg, msgs: make(chan jetstream.Msg), closed: make(chan struct{}), stopped: make(chan struct{})}
	it, err := f.open(ctx)
	if err != nil {
		return nil, err
	}
	f.iter = it
	go f.pump(it)
	return f, nil
}

func (f *Feed) open(ctx context.Context) (jetstream.MessagesContext, error) {
	cons, err := f.cfg.JetStream.CreateOrUpdateConsumer(ctx, f.cfg.Stream, f.cfg.Consumer)
	if err != nil {
		return nil, fmt.Errorf("declare consumer %s: %w", f.cfg.Consumer.Durable, err)
	}
	it, err := cons.Messages(f.cfg.Pull...)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", f.cfg.Consumer.Durable, err)
	}
	return it, nil
}

// pump reads the iterator and hands the messages to Next until the Feed
// is stopped, or drained and empty; a failed iterator is replaced.
func (f *Feed) pump(it jetstream.MessagesContext) {
	defer close(f.msgs)
	for {
		// No NextMaxWait: the heartbeat timer lives only as long as
		// this call (see Feed).
		m, err := it.Next()
		if err == nil {
			select {
			case f.msgs <- m:
				continue
			case <-f.stopped:
				return
			}
		}
		f.mu.Lock()
		closing := f.closing
		if !closing {
			f.iter = nil
			// Ended without a Stop of ours: ErrConsumerDeleted,
			// ErrNoHeartbeat, a bad request, a closed subscription.
			f.cfg.Health.Down(worker.JetStream, fmt.Errorf("consumer %s: %w", f.cfg.Consumer.Durable, err))
		}
		f.mu.Unlock()
		it.Stop()
		if closing {
			return
		}
		if it, err = f.reopen(); err != nil {
			return
		}
	}
}

// Next returns the next message. With wait > 0 it returns nats.ErrTimeout
// when none came in that time; with wait 0 it waits until one comes. It
// returns jetstream.ErrMsgIteratorClosed once the Feed is stopped (or
// drained and empty), and no other error: a failed iterator is replaced.
func (f *Feed) Next(wait time.Duration) (jetstream.Msg, error) {
	select {
	case <-f.stopped:
		return nil, jetstream.ErrMsgIteratorClosed
	default:
	}
	select {
	case m, ok := <-f.msgs:
		return f.took(m, ok)
	default:
	}
	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	poll := time.NewTicker(f.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case m, ok := <-f.msgs:
			return f.took(m, ok)
		case <-f.stopped:
			return nil, jetstream.ErrMsgIteratorClosed
		case <-expired:
			f.checkConnection()
			return nil, nats.ErrTimeout
		case <-poll.C:
			f.checkConnection()
		}
	}
}

func (f *Feed) took(m jetstream.Msg, ok bool) (jetstream.Msg, error) {
	if !ok {
		return nil, jetstream.ErrMsgIteratorClosed
	}
	f.cfg.Health.Up(worker.JetStream)
	return m, nil
}

// checkConnection tells Health whether the connection is up while no
// message comes. While the pump re-creates the iterator, the pump's own
// report stands.
func (f *Feed) checkConnection() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.iter == nil || f.closing {
		return
	}
	if nc := f.cfg.JetStream.Conn(); nc != nil && !nc.IsConnected() {
		f.cfg.Health.Down(worker.JetStream, errors.New("nats disconnected"))
	} else {
		f.cfg.Health.Up(worker.JetStream)
	}
}

// reopen declares the consumer again and opens a new iterator, with
// backoff, until it succeeds or the Feed is stopped.
func (f *Feed) reopen() (jetstream.MessagesContext, error) {
	for attempt := 1; ; attempt++ {
		select {
		case <-f.closed:
			return nil, jetstream.ErrMsgIteratorClosed
		case <-time.After(worker.Backoff(attempt, f.cfg.RetryBase, f.cfg.RetryCap)):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Stop and Drain do not wait for a declaration in flight.
		go func() {
			select {
			case <-f.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		it, err := f.open(ctx)
		cancel()
		f.mu.Lock()
		closing := f.closing
		if err != nil && !closing {
			f.cfg.Health.Down(worker.JetStream, err)
		}
		if err == nil && !closing {
			f.iter = it
			f.cfg.Health.Up(worker.JetStream)
		}
		f.mu.Unlock()
		if closing {
			if it != nil {
				it.Stop()
			}
			return nil, jetstream.ErrMsgIteratorClosed
		}
		if err == nil {
			return it, nil
		}
	}
}

// Stop ends the Feed at once: messages buffered and not returned are
// redelivered after AckWait.
func (f *Feed) Stop() { f.close(false) }

// Drain ends the Feed after the messages already buffered: Next returns
// them, then jetstream.ErrMsgIteratorClosed.
func (f *Feed) Drain() { f.close(true) }

func (f *Feed) close(drain bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.halted || (drain && f.closing) {
		return
	}
	if !f.closing {
		f.closing = true
		close(f.closed)
	}
	if !drain {
		// Also after a Drain: the pump may hold a message nobody takes.
		f.halted = true
		close(f.stopped)
	}
	if f.iter == nil {
		return
	}
	if drain {
		f.iter.Drain()
	} else {
		f.iter.Stop()
	}
}
