package notify

import (
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// A gateway's 429 is its account limit, the gateway working as agreed,
// not a message failing. Counting it as a failed attempt would grow each
// message's backoff exponentially while the gateway merely asked for a
// slower pace: a message that met the limit a dozen times would then
// wait minutes (up to RetryCap) after the limit had long stopped
// biting, and the last SMS of a round would arrive late for no reason.
// So a rate-limited message is handed back uncounted after the gateway's
// Retry-After (spread with jitter, so the refused ones do not return all
// at once), and the worker slows its own sending instead:
// by 30 % on a refusal (at most once per paceCoolDown, so one burst of
// refusals is one step), and back up by 1 % with each message taken, to
// the configured rate. That converges on the account's
// real limit from either side, which is what makes most calls 202s
// rather than 429s.

// pace adapts a worker's rate limiter to the gateway's refusals. It
// does nothing when the configured rate is unlimited.
type pace struct {
	limiter *rate.Limiter
	max     rate.Limit // the configured rate: the ceiling
	min     rate.Limit // the floor: a refusal never slows below this

	mu   sync.Mutex
	last time.Time // the last slow-down
}

const (
	paceDown     = 0.7                    // the rate kept after a refusal
	paceUp       = 1.01                   // the rate gained per message taken
	paceCoolDown = 250 * time.Millisecond // refusals closer than this are one step
)

func newPace(l *rate.Limiter, configured rate.Limit) *pace {
	return &pace{limiter: l, max: configured, min: max(configured/100, 1)}
}

// refused slows the worker after a 429.
func (p *pace) refused(now time.Time) {
	if p.max == rate.Inf {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.last) < paceCoolDown {
		return
	}
	p.last = now
	p.limiter.SetLimitAt(now, max(p.min, p.limiter.Limit()*paceDown))
}

// taken speeds the worker back up after a message the gateway took.
func (p *pace) taken(now time.Time) {
	if p.max == rate.Inf {
		return
	}
	if l := p.limiter.Limit(); l < p.max {
		p.limiter.SetLimitAt(now, min(p.max, l*paceUp))
	}
}

// rateLimitedWait is when a message the gateway refused with 429 comes
// back: after Retry-After (a second when none was given), plus up to as
// much again at random.
func rateLimitedWait(retryAfter time.Duration) time.Duration {
	d := max(retryAfter, time.Second)
	return d + rand.N(d)
}
