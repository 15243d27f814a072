package verify

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The identity provider bills every call, and a call is what a bot buys
// with each random token it submits. The spend guard decides, before a
// call goes out, whether this process may make it now:
//
//   - at most ProviderCallsPerCampaign calls per second per campaign, a
//     ceiling on the whole bill whatever the addresses;
//   - at most ProviderCallsPerPrefix calls per minute per client address
//     prefix (the keyed hash intake publishes: an IPv4 address, an IPv6
//     /64), so that one network cannot spend the campaign's budget alone;
//   - a prefix whose answered calls of the last minute were almost all
//     invalid tokens (floodShare of at least floodSample calls, or of
//     its whole budget if smaller) is
//     flooding: for the next minute it gets a tenth of the budget.
//
// A call the guard refuses is never made and never held against the
// intent: the message is put back with a delay (the wait for a token plus
// the usual backoff) and comes back later, as often as it takes. Nothing
// is decided without the provider, so a real citizen behind a busy NAT,
// even one shared with a bot, is only delayed; a random-token flood buys
// at most a tenth of the per-prefix budget per minute from each prefix it
// holds. Intake's own per-address limit bounds how fast a prefix can add
// intents to the backlog that waits.
//
// Each verify process keeps its own budgets: with P processes sharing the
// consumer the ceilings are P times the settings.
//
// The prefixes' budgets sit in a table of fixed size (prefixTable,
// spend_table.go), never one entry per prefix seen: a surge of a million
// addresses costs this process no more memory than a quiet hour.
type spendGuard struct {
	perPrefix   int        // calls per prefix per minute; 0: no prefix limit
	perCampaign rate.Limit // calls per campaign per second; 0: no campaign limit
	burst       int        // the campaign bucket's burst
	full, flood bucketRule // a prefix's bucket, and a flooding prefix's

	mu        sync.Mutex
	campaigns map[string]*rate.Limiter
	prefixes  prefixTable
	epoch     time.Time // the first call's time: the table's times count from it
}

const (
	spendWindow = time.Minute
	floodSample = 10 // answered calls before a prefix can be judged
	floodShare  = 0.9
	floodCut    = 10 // a flooding prefix's budget is divided by this
)

// Causes of a refused call, as NAK causes in the metrics.
const (
	spendCampaign = "spend_campaign"
	spendPrefix   = "spend_prefix"
)

func newSpendGuard(perPrefix int, perCampaign float64) *spendGuard {
	return newSpendGuardOf(perPrefix, perCampaign, prefixCells)
}

// newSpendGuardOf is newSpendGuard with a prefix table of the given
// number of cells, which tests make small.
func newSpendGuardOf(perPrefix int, perCampaign float64, cells int) *spendGuard {
	g := &spendGuard{campaigns: map[string]*rate.Limiter{}}
	if perPrefix > 0 {
		g.perPrefix = perPrefix
		g.full = newBucketRule(perPrefix)
		g.flood = newBucketRule(max(1, perPrefix/floodCut))
		g.prefixes = newPrefixTable(cells)
	}
	if perCampaign > 0 {
		g.perCampaign = rate.Limit(perCampaign)
		g.burst = max(1, int(perCampaign))
	}
	return g
}

// allow takes a call from the campaign's and the prefix's budgets, or from
// neither: when one refuses it returns how long until both have a call and
// which refused. An intent without an address key has only the campaign's.
func (g *spendGuard) allow(now time.Time, campaign, addrKey string) (bool, time.Duration, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var c *rate.Limiter
	if g.perCampaign > 0 {
		c = g.campaigns[campaign]
		if c == nil {
			c = rate.NewLimiter(g.perCampaign, g.burst)
			g.campaigns[campaign] = c
		}
	}
	var p *prefixCell
	at := g.since(now)
	if g.perPrefix > 0 && addrKey != "" {
		p = g.prefix(at, addrKey)
		if wait := g.rule(p).wait(p, at); wait > 0 {
			return false, wait, spendPrefix
		}
	}
	if c != nil {
		if wait := waitFor(c, now); wait > 0 {
			return false, wait, spendCampaign
		}
		c.AllowN(now, 1)
	}
	if p != nil {
		g.rule(p).take(p, at)
	}
	return true, 0, ""
}

// answered records what the provider said of a prefix's token.
func (g *spendGuard) answered(now time.Time, addrKey string, invalid bool) {
	if g.perPrefix <= 0 || addrKey == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prefix(g.since(now), addrKey).count(invalid)
}

// since is now in the table's time: nanoseconds since the guard's first
// call, on the monotonic clock when now has a reading of it, so that a
// step of the wall clock neither empties nor fills the buckets.
func (g *spendGuard) since(now time.Time) int64 {
	if g.epoch.IsZero() {
		g.epoch = now
	}
	return int64(now.Sub(g.epoch))
}

// rule is the bucket p draws from: the whole budget or a flooding
// prefix's tenth.
func (g *spendGuard) rule(p *prefixCell) bucketRule {
	if p.flooding {
		return g.flood
	}
	return g.full
}

// prefix is a prefix's cell, its window turned over to now's minute: the
// cell it had, or a cell of the table started over with a full budget.
func (g *spendGuard) prefix(now int64, key string) *prefixCell {
	p, held := g.prefixes.lookup(now, key)
	if !held {
		return p
	}
	if now-p.window < int64(spendWindow) {
		p.touch(now)
		return p
	}
	// A flooding prefix's smaller budget must not by itself clear it.
	sample := min(floodSample, g.rule(p).burst)
	flooding := now-p.window < int64(2*spendWindow) &&
		int(p.calls) >= sample && float64(p.invalid) >= floodShare*float64(p.calls)
	tat := p.tatAt()
	if flooding != p.flooding {
		if flooding {
			// The calls left, at most the flooding prefix's burst.
			tat = g.flood.withTokens(now, min(g.full.tokens(tat, now), float64(g.flood.burst)))
		} else {
			// A minute of good tokens earns the whole budget back at once.
			tat = now
		}
		p.flooding = flooding
	}
	p.window, p.calls, p.invalid, p.seen = now, 0, 0, 0
	p.setTAT(tat)
	return p
}

// waitFor is how long until lim has a token at now; 0 if it has one.
func waitFor(lim *rate.Limiter, now time.Time) time.Duration {
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(lim.Limit()) * float64(time.Second))
}
