package intake

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Group commit: on a JetStream that fsyncs every write (sync_interval:
// always), each publish waits for a disk flush of its own, and intake's
// rate is the disk's flushes per second. With group commit, the
// submissions that arrive while earlier ones are being flushed go out
// together as one JetStream atomic batch (NATS ≥ 2.12), which a single
// node stores with one flush of the stream for the whole batch (and a few
// for the batch's staging store) before it acks. Every
// intent is still its own message with its own Nats-Msg-Id (the receipt),
// so the stream's de-duplication and the consumers do not change.
//
// An atomic batch is all or nothing: when one of its messages is a
// duplicate (a retry inside the window) JetStream refuses the whole batch,
// and the grouper then publishes that batch's intents one by one, which
// gives each its own answer (the retry its duplicate ack).

// JetStream's batch headers (ADR-50).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes of an atomic batch refused as a whole, after which
// its messages are published one by one.
const (
	errCodeAtomicDisabled      = 10174 // the stream does not allow atomic batches
	errCodeAtomicIncomplete    = 10176 // a staged message was lost or the batch timed out
	errCodeDuplicateInProcess  = 10158 // a message id is being stored right now
	errCodeAtomicDuplicate     = 10201 // a message of the batch is a duplicate
	errCodeAtomicTooManyFlight = 10210 // too many batches in flight on the stream
)

const (
	// groupMax is the most intents in one batch; JetStream's default limit
	// is 1,000.
	groupMax = 256
	// groupLinger is how long a batch waits for more intents to join, when
	// intents are arriving together (the batch or the one before holds
	// more than one). JetStream stores an atomic batch with a fixed cost
	// of about four synchronous disk writes (a staging store is created,
	// flushed and removed) besides the flush itself, so a batch twice as
	// large costs far less than two; the wait is small next to one flush.
	// Without it, a closed loop of clients splits into two alternating
	// half batches (docs/STREAMS.md, "Group commit").
	groupLinger = time.Millisecond
)

// groupItem is one submission waiting for its batch's ack.
type groupItem struct {
	msg  *nats.Msg
	ack  *jetstream.PubAck
	err  error
	done chan struct{}
}

var groupItems = sync.Pool{New: func() any { return &groupItem{done: make(chan struct{}, 1)} }}

// grouper gathers concurrent publishes into atomic batches. One batch is
// in flight at a time: JetStream stores a stream's batches one after the
// other anyway, and the intents that arrive meanwhile make the next one.
type grouper struct {
	nc      *nats.Conn
	timeout time.Duration
	queue   chan *groupItem
	stop    chan struct{}
	done    chan struct{}
	// observe sees each batch's size, for the metrics.
	observe func(size int)
	// log, when set, hears that the stream refuses atomic batches, at most
	// once a minute (warned: when, for the flusher alone).
	log    *slog.Logger
	warned time.Time
}

func newGrouper(nc *nats.Conn, timeout time.Duration, observe func(int), log *slog.Logger) *grouper {
	g := &grouper{
		nc: nc, timeout: timeout, observe: observe, log: log,
		queue: make(chan *groupItem, groupMax),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go g.flusher()
	return g
}

// close stops the flusher. The callers' admission has drained first, so
// nothing is queued or waiting.
func (g *grouper) close() {
	close(g.stop)
	<-g.done
}

// publish queues msg for the next batch and waits for its ack. Each step
// of the wait is bounded by the publish timeout: the batch in flight
// before it, its own, and, if JetStream refuses the batch as a whole, the
// one-by-one publishes.
func (g *grouper) publish(msg *nats.Msg) (*jetstream.PubAck, error) {
	it := groupItems.Get().(*groupItem)
	it.msg = msg
	g.queue <- it
	<-it.done
	ack, err := it.ack, it.err
	*it = groupItem{done: it.done}
	groupItems.Put(it)
	return ack, err
}

func (g *grouper) flusher() {
	defer close(g.done)
	batch := make([]*groupItem, 0, groupMax)
	linger := time.NewTimer(groupLinger)
	linger.Stop()
	prev := 0
	for {
		select {
		case it := <-g.queue:
			batch = append(batch[:0], it)
		case <-g.stop:
			return
		}
	fill:
		for len(batch) < groupMax {
			select {
			case it := <-g.queue:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		if len(batch) < groupMax && (len(batch) > 1 || prev > 1) {
			linger.Reset(groupLinger)
		wait:
			for len(batch) < groupMax {
				select {
				case it := <-g.queue:
					batch = append(batch, it)
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		prev = len(batch)
		g.send(batch)
		for _, it := range batch {
			it.done <- struct{}{}
		}
		clear(batch)
	}
}

// send publishes batch and sets each item's ack or error.
func (g *grouper) send(batch []*groupItem) {
	if g.observe != nil {
		g.observe(len(batch))
	}
	if len(batch) == 1 {
		// One intent: an atomic batch would add a staging store for nothing.
		batch[0].ack, batch[0].err = publishMsg(g.nc, batch[0].msg, g.timeout)
		return
	}
	acks, err := g.sendAtomic(batch)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && refusedAsBatch(apiErr) {
		if apiErr.ErrorCode == errCodeAtomicDisabled && g.log != nil && time.Since(g.warned) > time.Minute {
			// Redeclared without them: by a process not told about group
			// commit. Every intent is still published, one by one.
			g.warned = time.Now()
			g.log.Warn("group commit: the submitted stream refuses atomic batches; publishing intents one by one (set PREREG_GROUP_COMMIT=true on every process)")
		}
		g.sendEach(batch)
		return
	}
	for i, it := range batch {
		if err != nil {
			it.err = err
			continue
		}
		it.ack = &acks[i]
	}
}

// batchAck is JetStream's answer to an atomic batch's commit: the ack of
// its last message and the batch's size.
type batchAck struct {
	Error    *jetstream.APIError `json:"error,omitempty"`
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Domain   string              `json:"domain,omitempty"`
	Batch    string              `json:"batch"`
	Count    int                 `json:"count"`
}

func (a *batchAck) apiError() *jetstream.APIError { return a.Error }

// sendAtomic publishes batch as one atomic batch: every message but the
// last without a reply, the last with the commit header, whose ack covers
// them all. It returns one ack per message, in order.
func (g *grouper) sendAtomic(batch []*groupItem) ([]jetstream.PubAck, error) {
	id := nuid.Next()
	defer func() {
		for _, it := range batch {
			h := it.msg.Header
			h.Del(hdrBatchID)
			h.Del(hdrBatchSeq)
			h.Del(hdrBatchCommit)
		}
	}()
	last := len(batch) - 1
	for i, it := range batch[:last] {
		it.msg.Header[hdrBatchID] = []string{id}
		it.msg.Header[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
		if err := g.nc.PublishMsg(it.msg); err != nil {
			return nil, err
		}
	}
	commit := batch[last].msg
	commit.Header[hdrBatchID] = []string{id}
	commit.Header[hdrBatchSeq] = []string{strconv.Itoa(last + 1)}
	commit.Header[hdrBatchCommit] = []string{"1"}
	var ack batchAck
	if err := requestAck(g.nc, commit, g.timeout, &ack); err != nil {
		return nil, err
	}
	if ack.Stream == "" || ack.Count != len(batch) || ack.Sequence < uint64(len(batch)) {
		return nil, jetstream.ErrInvalidJSAck
	}
	acks := make([]jetstream.PubAck, len(batch))
	first := ack.Sequence - uint64(last)
	for i := range acks {
		acks[i] = jetstream.PubAck{Stream: ack.Stream, Sequence: first + uint64(i), Domain: ack.Domain}
	}
	return acks, nil
}

// sendEach publishes each message of a batch JetStream refused as a whole,
// concurrently, each with its own ack.
func (g *grouper) sendEach(batch []*groupItem) {
	var wg sync.WaitGroup
	for _, it := range batch {
		wg.Go(func() { it.ack, it.err = publishMsg(g.nc, it.msg, g.timeout) })
	}
	wg.Wait()
}

// refusedAsBatch reports whether JetStream refused an atomic batch for
// being a batch (a duplicate inside, too many batches, a lost staged
// message), so that its messages may still be stored one by one.
func refusedAsBatch(e *jetstream.APIError) bool {
	switch e.ErrorCode {
	case errCodeAtomicDisabled, errCodeAtomicIncomplete, errCodeDuplicateInProcess,
		errCodeAtomicDuplicate, errCodeAtomicTooManyFlight:
		return true
	}
	return false
}
