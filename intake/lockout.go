package intake

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/stream"
)

// lockout counts the wrong birth dates given with each receipt, in the
// stream.ReceiptLookups bucket that every replica shares, and locks the
// receipt's lookups after max of them, for a delay that doubles with each
// further one up to maxDelay.
//
// An attempt is counted before its birth date is compared (reserve) and
// handed back when the date was not wrong (refund): otherwise a thousand
// guesses sent at once would all pass the check before the first of them
// was counted. Reservations are compare-and-set on the entry's revision,
// so at most max attempts on an unlocked receipt get an answer, whatever
// the number of replicas or requests in parallel.
type lockout struct {
	kv       jetstream.KeyValue
	max      int
	delay    time.Duration // the first lock's
	maxDelay time.Duration
	timeout  time.Duration
	now      func() time.Time
}

// lockState is one receipt's entry: wrong birth dates so far and, when
// locked, until when (unix milliseconds; 0 when not locked).
type lockState struct {
	failures int
	until    int64
}

func (s lockState) encode() []byte {
	b := strconv.AppendInt(make([]byte, 0, 24), int64(s.failures), 10)
	b = append(b, ' ')
	return strconv.AppendInt(b, s.until, 10)
}

func decodeLockState(b []byte) (lockState, error) {
	f, u, ok := strings.Cut(string(b), " ")
	failures, err1 := strconv.Atoi(f)
	until, err2 := strconv.ParseInt(u, 10, 64)
	if !ok || err1 != nil || err2 != nil || failures < 0 {
		return lockState{}, errors.New("malformed lockout entry")
	}
	return lockState{failures: failures, until: until}, nil
}

// attempt is a reserved attempt: what refund needs to hand it back.
type attempt struct {
	key      string
	prev     lockState
	revision uint64
}

// casTries bounds the compare-and-set rounds of one call: each failed
// round means another attempt on the same receipt won, so a receipt
// under that much fire is answered 503 rather than spun on.
const casTries = 8

// reserve counts an attempt on receipt. While the receipt is locked it
// counts nothing and returns how long the lock still holds.
func (l *lockout) reserve(ctx context.Context, receipt string) (attempt, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	for range casTries {
		now := l.now()
		prev, rev, err := l.get(ctx, receipt)
		if err != nil {
			return attempt{}, 0, err
		}
		if wait := time.UnixMilli(prev.until).Sub(now); wait > 0 {
			return attempt{}, wait, nil
		}
		next := lockState{failures: prev.failures + 1}
		if next.failures >= l.max {
			next.until = now.Add(l.lockFor(next.failures)).UnixMilli()
		}
		rev, err = l.put(ctx, receipt, next, rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another attempt on this receipt came first
		}
		if err != nil {
			return attempt{}, 0, err
		}
		return attempt{key: receipt, prev: prev, revision: rev}, 0, nil
	}
	return attempt{}, 0, errors.New("lockout: too many concurrent attempts on one receipt")
}

// refund hands back an attempt whose birth date was not wrong. When no
// other attempt came since, the entry is put back as it was; otherwise
// one failure is taken off and any lock those attempts set stays.
func (l *lockout) refund(ctx context.Context, a attempt) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if _, err := l.kv.Update(ctx, a.key, a.prev.encode(), a.revision); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return err
	}
	for range casTries {
		cur, rev, err := l.get(ctx, a.key)
		if err != nil {
			return err
		}
		cur.failures = max(0, cur.failures-1)
		_, err = l.put(ctx, a.key, cur, rev)
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
	}
	return errors.New("lockout: too many concurrent attempts on one receipt")
}

// lockFor is the lock after the nth wrong birth date (n ≥ max): delay,
// doubled for each one past max, at most maxDelay.
func (l *lockout) lockFor(n int) time.Duration {
	d := l.delay
	for range n - l.max {
		if d >= l.maxDelay/2 {
			return l.maxDelay
		}
		d *= 2
	}
	return min(d, l.maxDelay)
}

// get reads a receipt's entry and its revision (0 when there is none).
func (l *lockout) get(ctx context.Context, receipt string) (lockState, uint64, error) {
	e, err := l.kv.Get(ctx, receipt)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return lockState{}, 0, nil
	}
	if err != nil {
		return lockState{}, 0, fmt.Errorf("lockout: read: %w", err)
	}
	st, err := decodeLockState(e.Value())
	if err != nil {
		return lockState{}, 0, fmt.Errorf("lockout: %w", err)
	}
	return st, e.Revision(), nil
}

// put writes an entry if it is still at revision rev (0: if there is none).
func (l *lockout) put(ctx context.Context, receipt string, st lockState, rev uint64) (uint64, error) {
	if rev == 0 {
		return l.kv.Create(ctx, receipt, st.encode())
	}
	return l.kv.Update(ctx, receipt, st.encode(), rev)
}

// bindBuckets finds the receipt buckets that stream.Declare declared, and
// checks that a lockout cannot outlive the count that set it.
func (s *Service) bindBuckets(ctx context.Context) error {
	bodies, err := s.cfg.JetStream.KeyValue(ctx, stream.ReceiptBodies)
	if err != nil {
		return fmt.Errorf("bucket %s (declared by stream.Declare): %w", stream.ReceiptBodies, err)
	}
	lookups, err := s.cfg.JetStream.KeyValue(ctx, stream.ReceiptLookups)
	if err != nil {
		return fmt.Errorf("bucket %s (declared by stream.Declare): %w", stream.ReceiptLookups, err)
	}
	st, err := lookups.Status(ctx)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", stream.ReceiptLookups, err)
	}
	if ttl := st.TTL(); ttl > 0 && ttl <= s.cfg.LookupMaxLockout {
		return fmt.Errorf("bucket %s keeps entries %s, not longer than the longest lockout (%s): a lock would forget its count", stream.ReceiptLookups, ttl, s.cfg.LookupMaxLockout)
	}
	s.bodies = bodies
	s.lockout = &lockout{
		kv:       lookups,
		max:      s.cfg.LookupMaxFailures,
		delay:    s.cfg.LookupLockout,
		maxDelay: s.cfg.LookupMaxLockout,
		timeout:  s.cfg.PublishTimeout,
		now:      s.now,
	}
	return nil
}
