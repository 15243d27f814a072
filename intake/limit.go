package intake

import (
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Limiter is a set of token buckets, one per key, in a fixed amount of
// memory whatever the number of keys: keys are hashed onto a table of
// Slots cells of 8 bytes, each cell holding a bucket's state as a
// theoretical arrival time (GCRA, which is a token bucket with one number
// of state). Each key has two cells (two-choice hashing with conservative
// update): its bucket is the less used of the two, and a request raises
// both to at least its new state. Keys share a bucket only when both of
// their cells are shared, which can only make the limit stricter for them;
// with a per-process random seed an outsider cannot aim collisions at
// someone. With 2^20 cells and 60,000 active keys a single cell would be
// shared for about 6 % of keys (and the surge tests saw legitimate devices
// refused for it); both cells, for about 0.3 %, and then only against keys
// that are busy at the same moment.
type Limiter struct {
	interval int64 // nanoseconds per token
	tau      int64 // burst tolerance: (burst-1) × interval
	cells    []atomic.Int64
	mask     uint64
	seed     maphash.Seed
	epoch    time.Time
	now      func() time.Time
}

// NewLimiter returns a limiter of rate tokens per second with the given
// burst, over slots cells (rounded up to a power of two). A rate of zero or
// less returns nil, which allows everything.
func NewLimiter(rate float64, burst, slots int, now func() time.Time) *Limiter {
	if rate <= 0 {
		return nil
	}
	n := 1
	for n < max(slots, 1) {
		n <<= 1
	}
	interval := int64(float64(time.Second) / rate)
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		interval: interval,
		tau:      int64(max(burst, 1)-1) * interval,
		cells:    make([]atomic.Int64, n),
		mask:     uint64(n - 1),
		seed:     maphash.MakeSeed(),
		epoch:    now(),
		now:      now,
	}
}

// Allow takes a token from key's bucket. When there is none it returns
// false and how long until there is.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	h := maphash.String(l.seed, key)
	a := &l.cells[h&l.mask]
	b := &l.cells[(h>>32|h<<32)*0x9e3779b97f4a7c15>>11&l.mask]
	now := int64(l.now().Sub(l.epoch))
	for {
		// The key's bucket is the less used cell: only a key whose cells
		// are both shared pays for another's use.
		least, other := a, b
		oldA, oldB := a.Load(), b.Load()
		old := oldA
		if oldB < oldA {
			least, other, old = b, a, oldB
		}
		tat := max(old, now)
		if tat-now > l.tau {
			return false, time.Duration(tat - now - l.tau)
		}
		next := tat + l.interval
		if !least.CompareAndSwap(old, next) {
			continue // a concurrent request of a key on this cell: look again
		}
		raise(other, next)
		return true, 0
	}
}

// raise sets a cell to at least v (conservative update).
func raise(c *atomic.Int64, v int64) {
	for {
		old := c.Load()
		if old >= v || c.CompareAndSwap(old, v) {
			return
		}
	}
}

// Bytes is the memory the limiter's table takes.
func (l *Limiter) Bytes() int {
	if l == nil {
		return 0
	}
	return len(l.cells) * 8
}

// retryAfter is a Retry-After header value: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	return strconv.Itoa(max(s, 1))
}

// ClientAddr is the address a request came from: the peer's, unless the
// peer is a trusted proxy, in which case the right-most address of
// X-Forwarded-For that is not itself a trusted proxy. A client can put
// anything in the header, so only what our own proxies appended counts.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap()
	if !inPrefixes(peer, trusted) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr
			}
			addr = a.Unmap()
			if !inPrefixes(addr, trusted) {
				return addr
			}
		}
	}
	return addr
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
