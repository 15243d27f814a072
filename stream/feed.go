package stream

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	// Quiet is how long the Feed goes without a message before it asks
	// the server whether the consumer has messages to deliver and a pull
	// request of ours to deliver them to (5s); it asks again every Quiet
	// while no message comes. Messages pending with no request waiting
	// and the Feed starts over with a new iterator.
	Quiet time.Duration
}

// Feed is a durable pull consumer's stream of messages that outlives what
// ends a jetstream.MessagesContext: a deleted consumer, missed heartbeats,
// a bad request, a server restart. When the iterator fails, the Feed
// declares the consumer again and opens a new iterator, with backoff,
// until it succeeds or is stopped; unacknowledged messages come back
// after AckWait like any redelivery. Next is for one goroutine; Stop and
// Drain may be called from any.
//
// One goroutine of the Feed's own (the pump) reads the iterator and hands
// each message to Next. It holds at most one message that Next has not
// taken.
//
// Why the pump asks the server: nats.go's iterator (jetstream/pull.go,
// Messages) counts the messages its pull requests may still bring and
// sends a new request only when that count falls under half of
// PullMaxMessages, and it looks at that count only inside its Next. Two
// ways the server ends up holding no request while the count says
// otherwise:
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
// messages that nobody will send. Its own sign of that, missed idle
// heartbeats, is watched only inside one call of its Next (a timer of
// twice the heartbeat, armed when the call starts), and calls that last
// that long stalled the iterator under load (it looks at its count only
// as a call starts or something arrives): in bench scale verify went 10
// to 30 s at a time without a message at 200,000 submissions, and never
// with calls of a second. So the pump calls Next for at most Poll, and after
// Quiet without a message asks the server (consumer info): messages
// pending and no pull request waiting means the iterator's pull is lost,
// and the Feed replaces it as for any other failure. With several
// processes on one durable consumer a request of another process hides a
// lost one of this process until that other request is served.
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
	if cfg.Quiet <= 0 {
		cfg.Quiet = 5 * time.Second
	}
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
// is stopped, or drained and empty; a failed iterator, or one whose pull
// the server no longer holds, is replaced.
func (f *Feed) pump(it jetstream.MessagesContext) {
	defer close(f.msgs)
	last, asked := time.Now(), time.Time{}
	for {
		m, err := it.Next(jetstream.NextMaxWait(f.cfg.Poll))
		if err == nil {
			last = time.Now()
			select {
			case f.msgs <- m:
				continue
			case <-f.stopped:
				return
			}
		}
		if errors.Is(err, nats.ErrTimeout) {
			now := time.Now()
			if now.Sub(last) < f.cfg.Quiet || now.Sub(asked) < f.cfg.Quiet {
				continue
			}
			asked = now
			if !f.pullLost() {
				continue
			}
			err = errPullLost
		}
		f.mu.Lock()
		closing := f.closing
		if !closing {
			f.iter = nil
			// Ended without a Stop of ours: ErrConsumerDeleted, a bad
			// request, a closed subscription, a lost pull.
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
		last, asked = time.Now(), time.Time{}
	}
}

// errPullLost is why the Feed replaces an iterator whose pull request the
// server no longer holds.
var errPullLost = errors.New("messages pending and no pull request waiting")

// pullLost asks the server whether the consumer has messages to deliver
// and no pull request to deliver them to. An error (the server busy or
// unreachable) is no answer: the connection's own checks and the next
// ask will tell.
func (f *Feed) pullLost() bool {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Poll)
	defer cancel()
	cons, err := f.cfg.JetStream.Consumer(ctx, f.cfg.Stream, f.cfg.Consumer.Durable)
	if err != nil {
		return false
	}
	info := cons.CachedInfo()
	return info.NumPending > 0 && info.NumWaiting == 0 && info.NumAckPending < maxAckPending(info.Config)
}

// maxAckPending is the consumer's bound on messages delivered and not
// acknowledged: at the bound the server delivers nothing, whoever waits.
func maxAckPending(c jetstream.ConsumerConfig) int {
	if c.MaxAckPending <= 0 {
		return math.MaxInt
	}
	return c.MaxAckPending
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
