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
type spendGuard struct {
	perPrefix   int        // calls per prefix per minute; 0: no prefix limit
	perCampaign rate.Limit // calls per campaign per second; 0: no campaign limit
	burst       int        // the campaign bucket's burst

	mu        sync.Mutex
	campaigns map[string]*rate.Limiter
	prefixes  map[string]*prefixBudget
	swept     time.Time
}

// prefixBudget is one address prefix's bucket and what the provider said
// of its tokens in the current minute.
type prefixBudget struct {
	lim      *rate.Limiter
	window   time.Time // start of the current minute
	calls    int       // answered calls in the window
	invalid  int       // of which invalid tokens
	flooding bool      // judged on the previous window
	last     time.Time
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
	g := &spendGuard{campaigns: map[string]*rate.Limiter{}, prefixes: map[string]*prefixBudget{}}
	if perPrefix > 0 {
		g.perPrefix = perPrefix
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
	g.sweep(now)
	var c *rate.Limiter
	if g.perCampaign > 0 {
		c = g.campaigns[campaign]
		if c == nil {
			c = rate.NewLimiter(g.perCampaign, g.burst)
			g.campaigns[campaign] = c
		}
	}
	var p *prefixBudget
	if g.perPrefix > 0 && addrKey != "" {
		p = g.prefix(now, addrKey)
		p.last = now
	}
	if p != nil {
		if wait := waitFor(p.lim, now); wait > 0 {
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
		p.lim.AllowN(now, 1)
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
	p := g.prefix(now, addrKey)
	p.calls++
	if invalid {
		p.invalid++
	}
}

// prefix is a prefix's budget, its window turned over to now's minute.
func (g *spendGuard) prefix(now time.Time, key string) *prefixBudget {
	p := g.prefixes[key]
	if p == nil {
		p = &prefixBudget{lim: rate.NewLimiter(perMinute(g.perPrefix), g.perPrefix), window: now, last: now}
		g.prefixes[key] = p
		return p
	}
	if now.Sub(p.window) < spendWindow {
		return p
	}
	// A flooding prefix's smaller budget must not by itself clear it.
	sample := min(floodSample, p.lim.Burst())
	flooding := now.Sub(p.window) < 2*spendWindow &&
		p.calls >= sample && float64(p.invalid) >= floodShare*float64(p.calls)
	if flooding != p.flooding {
		if flooding {
			n := max(1, g.perPrefix/floodCut)
			p.lim.SetLimitAt(now, perMinute(n))
			p.lim.SetBurstAt(now, n)
		} else {
			// A minute of good tokens earns the whole budget back at once.
			p.lim = rate.NewLimiter(perMinute(g.perPrefix), g.perPrefix)
		}
		p.flooding = flooding
	}
	p.window, p.calls, p.invalid = now, 0, 0
	return p
}

// sweep forgets, once a window, the prefixes idle for two: their buckets
// are full again and their flood judgement stale, so forgetting them
// changes nothing but the memory held.
func (g *spendGuard) sweep(now time.Time) {
	if now.Sub(g.swept) < spendWindow {
		return
	}
	g.swept = now
	for k, p := range g.prefixes {
		if now.Sub(p.last) >= 2*spendWindow {
			delete(g.prefixes, k)
		}
	}
}

func perMinute(n int) rate.Limit { return rate.Limit(float64(n) / spendWindow.Seconds()) }

// waitFor is how long until lim has a token at now; 0 if it has one.
func waitFor(lim *rate.Limiter, now time.Time) time.Duration {
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(lim.Limit()) * float64(time.Second))
}
