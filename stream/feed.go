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
	// Poll bounds each wait inside Next, so that a disconnection is
	// noticed while no message comes (1s).
	Poll time.Duration
}

// Feed is a durable pull consumer's stream of messages that outlives what
// ends a jetstream.MessagesContext: a deleted consumer, missed heartbeats,
// a bad request, a server restart. When the iterator fails, the Feed
// declares the consumer again and opens a new iterator, with backoff,
// until it succeeds or is stopped; unacknowledged messages come back
// after AckWait like any redelivery. Next is for one goroutine; Stop and
// Drain may be called from any.
type Feed struct {
	cfg FeedConfig

	mu      sync.Mutex
	iter    jetstream.MessagesContext
	closing bool
	closed  chan struct{} // closed by Stop or Drain: ends a backoff wait
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
	// Missed heartbeats are reported, not swallowed: the Feed replaces the
	// iterator rather than wait on one whose pull the server forgot.
	cfg.Pull = slices.Concat(cfg.Pull, []jetstream.PullMessagesOpt{jetstream.WithMessagesErrOnMissingHeartbeat(true)})
	f := &Feed{cfg: cfg, closed: make(chan struct{})}
	it, err := f.open(ctx)
	if err != nil {
		return nil, err
	}
	f.iter = it
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

// Next returns the next message. With wait > 0 it returns nats.ErrTimeout
// when none came in that time; with wait 0 it waits until one comes. It
// returns jetstream.ErrMsgIteratorClosed once the Feed is stopped (or
// drained and empty), and no other error: a failed iterator is replaced.
func (f *Feed) Next(wait time.Duration) (jetstream.Msg, error) {
	var deadline time.Time
	if wait > 0 {
		deadline = time.Now().Add(wait)
	}
	for {
		f.mu.Lock()
		it, closing := f.iter, f.closing
		f.mu.Unlock()
		if it == nil {
			if closing {
				return nil, jetstream.ErrMsgIteratorClosed
			}
			if err := f.reopen(); err != nil {
				return nil, err
			}
			continue
		}
		step := f.cfg.Poll
		if wait > 0 {
			step = min(step, time.Until(deadline))
			if step <= 0 {
				return nil, nats.ErrTimeout
			}
		}
		m, err := it.Next(jetstream.NextMaxWait(step))
		switch {
		case err == nil:
			f.cfg.Health.Up(worker.JetStream)
			return m, nil
		case errors.Is(err, nats.ErrTimeout):
			if nc := f.cfg.JetStream.Conn(); nc != nil && !nc.IsConnected() {
				f.cfg.Health.Down(worker.JetStream, errors.New("nats disconnected"))
			} else {
				f.cfg.Health.Up(worker.JetStream)
			}
			if wait > 0 && !time.Now().Before(deadline) {
				return nil, err
			}
			continue
		}
		f.mu.Lock()
		closing = f.closing
		if !closing && f.iter == it {
			f.iter = nil
		}
		f.mu.Unlock()
		if closing {
			return nil, jetstream.ErrMsgIteratorClosed
		}
		// Ended without a Stop of ours: ErrConsumerDeleted, ErrNoHeartbeat,
		// a bad request, a closed subscription. Start over.
		f.cfg.Health.Down(worker.JetStream, fmt.Errorf("consumer %s: %w", f.cfg.Consumer.Durable, err))
		it.Stop()
	}
}

// reopen declares the consumer again and opens a new iterator, with
// backoff, until it succeeds or the Feed is stopped.
func (f *Feed) reopen() error {
	for attempt := 1; ; attempt++ {
		select {
		case <-f.closed:
			return jetstream.ErrMsgIteratorClosed
		case <-time.After(worker.Backoff(attempt, f.cfg.RetryBase, f.cfg.RetryCap)):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		it, err := f.open(ctx)
		cancel()
		if err != nil {
			f.cfg.Health.Down(worker.JetStream, err)
			continue
		}
		f.mu.Lock()
		closing := f.closing
		if !closing {
			f.iter = it
		}
		f.mu.Unlock()
		if closing {
			it.Stop()
			return jetstream.ErrMsgIteratorClosed
		}
		f.cfg.Health.Up(worker.JetStream)
		return nil
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
	if f.closing {
		return
	}
	f.closing = true
	close(f.closed)
	if f.iter == nil {
		return
	}
	if drain {
		f.iter.Drain()
	} else {
		f.iter.Stop()
	}
}
