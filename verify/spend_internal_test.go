package verify

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

func TestSpendGuardPrefixBudget(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(60, -1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 60 {
		ok, _, _ := g.allow(now, "c", "bot")
		require.True(t, ok, "call %d within the burst", i)
	}
	ok, wait, cause := g.allow(now, "c", "bot")
	require.False(t, ok, "the 61st call of the minute waits")
	require.Equal(t, spendPrefix, cause)
	require.InDelta(t, time.Second, wait, float64(10*time.Millisecond), "one call a second refills")
	ok, _, _ = g.allow(now, "c", "home")
	require.True(t, ok, "another prefix has its own budget")
	ok, _, _ = g.allow(now, "c", "")
	require.True(t, ok, "no address: only the campaign's budget")
	ok, _, _ = g.allow(now.Add(time.Second), "c", "bot")
	require.True(t, ok, "a second later, one more")
}

// TestSpendGuardFloodingPrefix: a prefix whose tokens were almost all
// invalid gets a tenth of the budget for the next minute, and its budget
// back once its tokens are valid again; a busy prefix of valid tokens
// keeps the whole budget.
func TestSpendGuardFloodingPrefix(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(60, -1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	spend := func(key string, invalidShare float64) int {
		n := 0
		for i := range 200 {
			ok, _, _ := g.allow(now, "c", key)
			if !ok {
				break
			}
			n++
			g.answered(now, key, float64(i%10) < invalidShare*10)
		}
		return n
	}
	require.Equal(t, 60, spend("bot", 1))
	require.Equal(t, 60, spend("nat", 0.2))
	now = now.Add(spendWindow)
	require.Equal(t, 6, spend("bot", 1), "flooding: a tenth of the budget")
	require.Equal(t, 60, spend("nat", 0.2), "mostly valid tokens: the whole budget")
	now = now.Add(spendWindow)
	require.Equal(t, 6, spend("bot", 0), "still flooding on the last minute's answers")
	now = now.Add(spendWindow)
	require.Equal(t, 60, spend("bot", 0), "valid tokens again: the budget back")
}

func TestSpendGuardCampaignBudget(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(-1, 10)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 10 {
		ok, _, _ := g.allow(now, "c", "addr-"+string(rune('a'+i)))
		require.True(t, ok)
	}
	ok, wait, cause := g.allow(now, "c", "another")
	require.False(t, ok, "the campaign's ceiling holds whatever the addresses")
	require.Equal(t, spendCampaign, cause)
	require.Positive(t, wait)
	ok, _, _ = g.allow(now, "other", "another")
	require.True(t, ok, "another campaign has its own")
}

// TestSpendGuardRefusalTakesNothing: a call the campaign refuses does not
// spend the prefix's budget.
func TestSpendGuardRefusalTakesNothing(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(2, 1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	ok, _, _ := g.allow(now, "c", "p")
	require.True(t, ok)
	ok, _, cause := g.allow(now, "c", "p")
	require.False(t, ok)
	require.Equal(t, spendCampaign, cause)
	ok, _, _ = g.allow(now.Add(time.Second), "c", "p")
	require.True(t, ok, "the prefix's second call was not taken by the refusal")
}

// TestSpendGuardForgetsIdlePrefixes: a prefix idle for two windows holds
// nothing (its cell is free for another) and has its whole budget back.
func TestSpendGuardForgetsIdlePrefixes(t *testing.T) {
	t.Parallel()
	g := newSpendGuardOf(60, -1, 1<<16) // 1,000 prefixes in 8,192 sets: none evicted
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 1000 {
		g.allow(now, "c", fmt.Sprint("prefix-", i))
	}
	for range 60 {
		g.allow(now, "c", "prefix-0")
	}
	require.Equal(t, 1000, g.held(now), "every prefix seen holds a cell")
	later := now.Add(2 * spendWindow)
	g.allow(later, "c", "new")
	require.Equal(t, 1, g.held(later), "only the prefix seen in the last two minutes is held")
	for i := range 60 {
		ok, _, _ := g.allow(later, "c", "prefix-0")
		require.True(t, ok, "call %d of an idle prefix's new budget", i)
	}
}

// TestSpendGuardHoldsNothingPerPrefix: a call from a prefix never seen
// costs no allocation, however many prefixes came before.
func TestSpendGuardHoldsNothingPerPrefix(t *testing.T) {
	g := newSpendGuard(60, 1000)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	keys := make([]string, 20_000)
	for i := range keys {
		keys[i] = fmt.Sprint("prefix-", i)
	}
	g.allow(now, "c", "warm") // the campaign's bucket
	i := 0
	allocs := testing.AllocsPerRun(len(keys)-1, func() {
		now = now.Add(time.Millisecond)
		if ok, _, _ := g.allow(now, "c", keys[i]); ok {
			g.answered(now, keys[i], i%2 == 0)
		}
		i++
	})
	require.Zero(t, allocs, "allocations per call of a new prefix")
}

// TestSpendGuardTableIsFixed: ten times as many prefixes as the table has
// cells leave it the size it was, each prefix a hash in one cell of 24
// bytes; the default table is 6 MiB.
func TestSpendGuardTableIsFixed(t *testing.T) {
	t.Parallel()
	require.Equal(t, 24, int(unsafe.Sizeof(prefixCell{})), "bytes per prefix cell")
	require.Equal(t, 6<<20, newSpendGuard(60, -1).prefixes.bytes(), "the default table")

	g := newSpendGuardOf(60, -1, 256)
	size, cells := g.prefixes.bytes(), &g.prefixes.cells[0]
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 10 * len(g.prefixes.cells) {
		now = now.Add(time.Millisecond)
		ok, _, _ := g.allow(now, "c", fmt.Sprint("prefix-", i))
		require.True(t, ok, "a prefix never seen has its budget, whatever the table holds")
		g.answered(now, fmt.Sprint("prefix-", i), true)
	}
	require.Equal(t, size, g.prefixes.bytes())
	require.Same(t, cells, &g.prefixes.cells[0], "the table was never reallocated")
	require.Equal(t, 256, g.held(now), "every cell is in use, and no more")
}

// TestSpendGuardHotPrefixStaysResident: a flooding prefix keeps its flood
// judgement and its spent bucket while ten times the table's size of
// cold prefixes pass through its set.
func TestSpendGuardHotPrefixStaysResident(t *testing.T) {
	t.Parallel()
	g := newSpendGuardOf(60, -1, 2*prefixWays)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	bot := func() bool {
		ok, _, _ := g.allow(now, "c", "bot")
		if ok {
			g.answered(now, "bot", true)
		}
		return ok
	}
	cold := 0
	// A minute of calls, each one between bot calls, a prefix never
	// seen again.
	minute := func() int {
		bought := 0
		for range 60 {
			for range 3 {
				key := fmt.Sprint("cold-", cold)
				cold++
				ok, _, _ := g.allow(now, "c", key)
				require.True(t, ok, "a cold prefix has its budget")
				g.answered(now, key, false)
				now = now.Add(100 * time.Millisecond)
			}
			if bot() {
				bought++
			}
			now = now.Add(700 * time.Millisecond)
		}
		return bought
	}
	start := now
	require.Equal(t, 60, minute(), "the first minute: the whole budget, all invalid")
	now = start.Add(spendWindow)
	require.Equal(t, 6+5, minute(), "flooding: a tenth of the budget, six at once and one every ten seconds")
	require.Greater(t, cold, 10*len(g.prefixes.cells), "cold prefixes seen, against the cells")
	require.Equal(t, 6, minute(), "still flooding on the last minute's answers: a tenth of the budget a minute")
}

// TestSpendGuardAsBefore drives the guard and a reference of the same
// rules, a map of golang.org/x/time/rate limiters per prefix, with the
// same random calls and answers, and requires the same decisions and
// waits while the table holds every prefix.
func TestSpendGuardAsBefore(t *testing.T) {
	t.Parallel()
	steps := []time.Duration{0, 0, 0, time.Millisecond, 300 * time.Millisecond, time.Second,
		7 * time.Second, 30 * time.Second, 59 * time.Second, 61 * time.Second, 2 * spendWindow}
	for _, perPrefix := range []int{1, 7, 60, 400} {
		t.Run(fmt.Sprint(perPrefix), func(t *testing.T) {
			t.Parallel()
			rnd := rand.New(rand.NewPCG(1, uint64(perPrefix)))
			g, ref := newSpendGuardOf(perPrefix, -1, 64), newRefGuard(perPrefix)
			now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
			for i := range 20_000 {
				now = now.Add(steps[rnd.IntN(len(steps))])
				p := rnd.IntN(6)
				key := fmt.Sprint("prefix-", p)
				ok, wait, cause := g.allow(now, "c", key)
				refOK, refWait := ref.allow(now, key)
				require.Equal(t, refOK, ok, "call %d of %s", i, key)
				if !ok {
					require.Equal(t, spendPrefix, cause)
					require.InDelta(t, refWait, wait, float64(time.Millisecond), "call %d of %s", i, key)
					continue
				}
				// Prefixes 0 and 1 flood, 2 floods now and then, the
				// rest are citizens.
				invalid := p < 2 || p == 2 && (now.Unix()/300)%2 == 0 && rnd.IntN(20) > 0
				g.answered(now, key, invalid)
				ref.answered(now, key, invalid)
			}
		})
	}
}

// held is how many cells hold a prefix seen within the last two windows.
func (g *spendGuard) held(now time.Time) int {
	at, n := g.since(now), 0
	for _, c := range g.prefixes.cells {
		if c.key != 0 && at-c.window < int64(2*spendWindow) {
			n++
		}
	}
	return n
}

// refGuard is the spend guard's prefix rules over a map of rate
// limiters, one per prefix, none ever forgotten.
type refGuard struct {
	perPrefix int
	prefixes  map[string]*refBudget
}

type refBudget struct {
	lim            *rate.Limiter
	window         time.Time
	calls, invalid int
	flooding       bool
}

func newRefGuard(perPrefix int) *refGuard {
	return &refGuard{perPrefix: perPrefix, prefixes: map[string]*refBudget{}}
}

func (g *refGuard) allow(now time.Time, key string) (bool, time.Duration) {
	p := g.prefix(now, key)
	if wait := waitFor(p.lim, now); wait > 0 {
		return false, wait
	}
	p.lim.AllowN(now, 1)
	return true, 0
}

func (g *refGuard) answered(now time.Time, key string, invalid bool) {
	p := g.prefix(now, key)
	p.calls++
	if invalid {
		p.invalid++
	}
}

func (g *refGuard) prefix(now time.Time, key string) *refBudget {
	perMinute := func(n int) rate.Limit { return rate.Limit(float64(n) / spendWindow.Seconds()) }
	p := g.prefixes[key]
	if p == nil {
		p = &refBudget{lim: rate.NewLimiter(perMinute(g.perPrefix), g.perPrefix), window: now}
		g.prefixes[key] = p
		return p
	}
	if now.Sub(p.window) < spendWindow {
		return p
	}
	sample := min(floodSample, p.lim.Burst())
	flooding := now.Sub(p.window) < 2*spendWindow &&
		p.calls >= sample && float64(p.invalid) >= floodShare*float64(p.calls)
	if flooding != p.flooding {
		if flooding {
			n := max(1, g.perPrefix/floodCut)
			p.lim.SetLimitAt(now, perMinute(n))
			p.lim.SetBurstAt(now, n)
		} else {
			p.lim = rate.NewLimiter(perMinute(g.perPrefix), g.perPrefix)
		}
		p.flooding = flooding
	}
	p.window, p.calls, p.invalid = now, 0, 0
	return p
}
