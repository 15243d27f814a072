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
// memory whatever the number of keys. A bucket is one number, its
// theoretical arrival time (GCRA, which is a token bucket with one number
// of state), and a bucket whose time has passed is full, which needs no
// state at all: only keys used within the last burst × interval hold a
// cell.
//
// The table is Slots cells of 8 bytes, each holding a key's 20-bit
// fingerprint and its bucket's time (44 bits of 10 µs since the
// limiter's epoch: 5.6 years). A key lives in one of the probeWindow cells
// after its hash: its own live cell if it has one, else the first free
// cell. Two keys share a bucket (which only makes the limit stricter for
// both) only when they meet in a window with the same fingerprint: with
// 2^20 cells and 60,000 live keys, about one key in 10^7. An earlier
// version shared the less used of two hashed cells, and with 60,000 live
// keys about 0.3 % of keys had both cells shared: the demo's surge saw a
// person's resubmission refused for a bot's spending.
//
// When every cell of a key's window holds another key's live bucket (the
// table is full of live keys, far beyond its design load), the key takes
// the cell nearest to full, so the evicted key starts over with a full
// bucket: under that load the limit errs towards letting through, never
// towards refusing a key it has not seen. A per-process random seed keeps
// an outsider from aiming keys at one window.
type Limiter struct {
	interval int64 // ticks per token
	tau      int64 // burst tolerance: (burst-1) × interval
	cells    []atomic.Uint64
	mask     uint64
	seed     maphash.Seed
	epoch    time.Time
	now      func() time.Time
}

const (
	tick        = 10 * time.Microsecond // the unit of a bucket's time
	tatBits     = 44
	tatMask     = 1<<tatBits - 1
	probeWindow = 8
)

// NewLimiter returns a limiter of rate tokens per second with the given
// burst, over slots cells (rounded up to a power of two, at least the
// probe window). A rate of zero or less returns nil, which allows
// everything.
func NewLimiter(rate float64, burst, slots int, now func() time.Time) *Limiter {
	if rate <= 0 {
		return nil
	}
	n := probeWindow
	for n < slots {
		n <<= 1
	}
	interval := max(int64(float64(time.Second)/rate/float64(tick)), 1)
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		interval: interval,
		tau:      int64(max(burst, 1)-1) * interval,
		cells:    make([]atomic.Uint64, n),
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
	fp := h >> tatBits // the top 20 bits
	first := h & l.mask
	now := max(int64(l.now().Sub(l.epoch)/tick), 0) // a clock set back before the epoch reads as the epoch
	for {
		var (
			cell               *atomic.Uint64
			old                uint64
			tat                int64
			free, victim       *atomic.Uint64
			freeOld, victimOld uint64
			victimTAT          int64 = math.MaxInt64
		)
		for i := range uint64(probeWindow) {
			c := &l.cells[(first+i)&l.mask]
			v := c.Load()
			t := int64(v & tatMask)
			if t <= now {
				if free == nil {
					free, freeOld = c, v
				}
				continue
			}
			if v>>tatBits == fp {
				cell, old, tat = c, v, t
				break
			}
			if t < victimTAT {
				victim, victimOld, victimTAT = c, v, t
			}
		}
		switch {
		case cell != nil: // the key's own live bucket
		case free != nil: // a full bucket: no state yet
			cell, old, tat = free, freeOld, now
		default: // the window is full of other keys' live buckets
			cell, old, tat = victim, victimOld, now
		}
		if tat-now > l.tau {
			return false, time.Duration(tat-now-l.tau) * tick
		}
		if cell.CompareAndSwap(old, fp<<tatBits|uint64(tat+l.interval)&tatMask) {
			return true, 0
		}
		// A concurrent request changed the cell: look again.
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

// DefaultIPv6Prefix is how many leading bits of an IPv6 address name one
// client for the per-address limits: a /64 is what one subscriber line
// or one host is given (RFC 6177), and its 2^64 addresses are free for
// that client to rotate through.
const DefaultIPv6Prefix = 64

// AddrPrefix is the network a client address is limited as: an IPv4
// address (or an IPv4-mapped IPv6 one) by itself, an IPv6 address by its
// first v6Bits bits (DefaultIPv6Prefix when v6Bits is not in 1..128).
// Every per-address limit keys on it, and so does the keyed address hash
// intake publishes, so that one IPv6 network cannot buy itself 2^64
// buckets. The zero Addr gives the zero Prefix.
func AddrPrefix(a netip.Addr, v6Bits int) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := a.BitLen()
	if a.Is6() {
		bits = v6Bits
		if bits < 1 || bits > 128 {
			bits = DefaultIPv6Prefix
		}
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{} // unreachable: bits fits the address
	}
	return p
}

// AddrKey is AddrPrefix as a limiter's key and the input of the
// published address hash: an IPv4 address as itself (so that its key is
// what it was before IPv6 was keyed by prefix), an IPv6 network in CIDR
// form; "" for the zero Addr.
func AddrKey(a netip.Addr, v6Bits int) string {
	p := AddrPrefix(a, v6Bits)
	switch {
	case !p.IsValid():
		return ""
	case p.Addr().Is4():
		return p.Addr().String()
	}
	return p.String()
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
	return clientAddr(ap.Addr(), r.Header.Values("X-Forwarded-For"), trusted)
}

// clientAddr is ClientAddr from the peer's address and the X-Forwarded-For
// headers' values, whichever server read them.
func clientAddr(peer netip.Addr, hops []string, trusted []netip.Prefix) netip.Addr {
	if !peer.IsValid() {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !inPrefixes(peer, trusted) {
		return peer
	}
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
