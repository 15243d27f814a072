package verify

import (
	"cmp"
	"hash/maphash"
	"math"
	"time"
	"unsafe"
)

// The spend guard keeps each address prefix's budget in a table of fixed
// size, as intake's per-address limiter does (intake/limit.go), because
// the prefixes a surge brings are about as many as its people: nothing
// in the pipeline may hold state per submission, and the guard's memory
// must not grow with the surge.
//
// The table is prefixCells cells of 24 bytes (prefixCell) in sets of
// prefixWays. A prefix lives in the set its key's hash names, in the
// cell holding its 64-bit hash (two prefixes share a budget only when
// their hashes are equal), else it takes a cell of that set:
//
//   - a cell never used or idle for two windows, which holds nothing a
//     fresh budget would not: its bucket is full again (a bucket fills
//     within a window of its last call) and its last window is too old
//     to be judged;
//   - else the cell called least recently, which starts over: its prefix,
//     when it comes back, has a full budget and no flood judgement, as
//     one idle for two minutes always has.
//
// Evicting errs towards letting a prefix call, never towards refusing a
// citizen a call: the per-campaign ceiling still holds, and what a flood
// can gain from it is small. A flood's prefixes are the hot ones, called
// over and over (every refused call is a call too), so they stay the
// most recent in their sets and keep their buckets and judgements; what
// is evicted is a prefix called once or twice a while ago, whose bucket
// has mostly refilled anyway. To evict a prefix that is spending, eight
// other prefixes must be called in its set between two of its calls.
//
// prefixCells is sized for the rate one process verifies (bench scale:
// some 3,500 calls a second): 2^18 cells are 75 seconds of calls from
// distinct prefixes, more than the minute an emptied bucket takes to
// fill, so even with every call from a new prefix a prefix is evicted,
// in all but the most loaded sets, only once its bucket is full again.
// The table is 6 MiB whatever the surge, allocated once, with no
// pointers for the collector to scan (under verify's GOGC of 400 the
// heap may grow to five times its live size before a collection).
const (
	prefixCells = 1 << 18
	prefixWays  = 8 // cells of a set: a prefix's candidates
	seenTick    = 250 * time.Millisecond
)

// prefixCell is one address prefix's budget: its bucket (GCRA: the
// theoretical arrival time of its next call, one number) and what the
// provider said of its tokens in the current window.
type prefixCell struct {
	key      uint64 // the prefix key's hash, never 0; 0: a cell never used
	window   int64  // start of the current window, in the guard's nanoseconds
	tat      uint32 // the bucket's theoretical arrival time, µs after window (< 2 windows): full once past
	seen     uint8  // the last call, in seenTicks after window (< 1 window): recency, for eviction
	calls    uint8  // answered calls in the window, halved with invalid when full
	invalid  uint8  // of which invalid tokens
	flooding bool   // judged on the previous window
}

// tatAt is the bucket's theoretical arrival time in the guard's time.
func (p *prefixCell) tatAt() int64 { return p.window + int64(p.tat)*int64(time.Microsecond) }

// setTAT stores tat, rounded up to the microsecond so that rounding never
// lends a call. A time before the window is a bucket already full at the
// window's start, the same as one full at it.
func (p *prefixCell) setTAT(tat int64) {
	us := (tat - p.window + int64(time.Microsecond) - 1) / int64(time.Microsecond)
	p.tat = uint32(min(max(us, 0), math.MaxUint32))
}

// touch marks a call at now, in the window.
func (p *prefixCell) touch(now int64) {
	p.seen = uint8(min(max((now-p.window)/int64(seenTick), 0), math.MaxUint8))
}

// recent is when the prefix was last called, to a seenTick.
func (p *prefixCell) recent() int64 { return p.window + int64(p.seen)*int64(seenTick) }

// count records one answered call. Past 255 calls in a window both counts
// are halved: the share of invalid tokens is what is judged, and 127
// calls are far beyond the sample.
func (p *prefixCell) count(invalid bool) {
	if p.calls == math.MaxUint8 {
		p.calls, p.invalid = p.calls/2, p.invalid/2
	}
	p.calls++
	if invalid {
		p.invalid++
	}
}

// bucketRule is a GCRA bucket's parameters: burst calls, one more every
// interval nanoseconds; tau is the burst tolerance, (burst-1) × interval.
type bucketRule struct {
	burst    int
	interval int64
	tau      int64
}

// newBucketRule is a bucket of n calls per window, all of them at once.
func newBucketRule(n int) bucketRule {
	iv := max(int64(spendWindow)/int64(n), 1)
	return bucketRule{burst: n, interval: iv, tau: int64(n-1) * iv}
}

// wait is how long until p's bucket has a call at now; 0 if it has one.
func (r bucketRule) wait(p *prefixCell, now int64) time.Duration {
	return time.Duration(max(p.tatAt()-now-r.tau, 0))
}

// take spends a call of p's bucket at now.
func (r bucketRule) take(p *prefixCell, now int64) {
	p.setTAT(max(p.tatAt(), now) + r.interval)
}

// tokens is how many calls a bucket of r whose arrival time is tat holds
// at now.
func (r bucketRule) tokens(tat, now int64) float64 {
	return float64(r.burst) - float64(max(tat-now, 0))/float64(r.interval)
}

// withTokens is the arrival time of a bucket of r holding n calls at now.
func (r bucketRule) withTokens(now int64, n float64) int64 {
	return now + int64(math.Ceil((float64(r.burst)-n)*float64(r.interval)))
}

// prefixTable is the spend guard's fixed table of prefix cells.
type prefixTable struct {
	cells []prefixCell
	mask  uint64 // sets - 1
	seed  maphash.Seed
}

// newPrefixTable is a table of at least cells cells, a power of two no
// smaller than a set. A per-process seed keeps an outsider from aiming
// prefixes at one set.
func newPrefixTable(cells int) prefixTable {
	n := prefixWays
	for n < cells {
		n <<= 1
	}
	return prefixTable{cells: make([]prefixCell, n), mask: uint64(n/prefixWays - 1), seed: maphash.MakeSeed()}
}

// lookup is key's cell: the one it holds (true), or one of its set taken
// for it and started over, with a full budget at now (false).
func (t *prefixTable) lookup(now int64, key string) (*prefixCell, bool) {
	h := max(maphash.String(t.seed, key), 1)
	i := (h & t.mask) * prefixWays
	set := t.cells[i : i+prefixWays]
	var free, victim *prefixCell
	for j := range set {
		c := &set[j]
		switch {
		case c.key == h:
			return c, true
		case free != nil:
		case c.key == 0 || now-c.window >= int64(2*spendWindow):
			free = c
		case victim == nil || c.recent() < victim.recent() ||
			c.recent() == victim.recent() && c.tatAt() < victim.tatAt():
			victim = c
		}
	}
	c := cmp.Or(free, victim)
	*c = prefixCell{key: h, window: now}
	return c, false
}

// bytes is the memory the table takes, whatever the prefixes seen.
func (t *prefixTable) bytes() int { return len(t.cells) * int(unsafe.Sizeof(prefixCell{})) }
