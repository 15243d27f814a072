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
// Slots cells of 8 bytes, each cell holding the bucket's state as a
// theoretical arrival time (GCRA, which is a token bucket with one number
// of state). Keys that collide share a bucket, which can only make the
// limit stricter for them; with a per-process random seed an outsider
// cannot aim collisions at someone, and with 2^20 cells and a million
// active keys a bucket is shared by about one other key at most.
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
	cell := &l.cells[maphash.String(l.seed, key)&l.mask]
	now := int64(l.now().Sub(l.epoch))
	for {
		old := cell.Load()
		tat := max(old, now)
		if tat-now > l.tau {
			return false, time.Duration(tat - now - l.tau)
		}
		if cell.CompareAndSwap(old, tat+l.interval) {
			return true, 0
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
