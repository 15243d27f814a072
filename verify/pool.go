package verify

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// pool is one provider of one campaign: its breaker, its bulkhead (a
// bounded queue and exactly Concurrency workers) and its rate limit.
type pool struct {
	campaign string
	provider campaign.Provider
	client   *providerClient
	breaker  *gobreaker.CircuitBreaker[providerAnswer]
	limiter  *rate.Limiter
	// calls holds a slot per provider call in flight: the bulkhead. The
	// pool runs workersPerCall times as many workers, so that one worker's cache look-ups
	// and publishes overlap another's call and the provider's concurrency
	// limit stays in use.
	calls  chan struct{}
	queue  chan job
	window *callWindow
	// saturatedUntil (unix ns): until then the dispatcher does not wait
	// for room in this pool's queue.
	saturatedUntil atomic.Int64
	// stateChanged is signalled (without blocking) when the breaker
	// changes state, so health is written at once.
	stateChanged chan struct{}
	// refusedTokens remembers, for about a window, which tokens were
	// refused, so that the share of refusals counts distinct tokens: one
	// intent retried does not make a storm.
	refusedTokens *tokenSet
}

func newPool(campaignID string, p campaign.Provider, s BreakerSettings, now func() time.Time, isShutdown func(error) bool) *pool {
	limit := rate.Inf
	if p.Rate > 0 {
		limit = rate.Limit(p.Rate)
	}
	conc := max(1, p.Concurrency)
	pl := &pool{
		campaign:     campaignID,
		provider:     p,
		client:       newProviderClient(p.URL, p.Timeout, conc),
		limiter:      rate.NewLimiter(limit, max(1, p.Burst)),
		calls:        make(chan struct{}, conc),
		queue:        make(chan job, conc),
		window:       newCallWindow(s.Window, s.Buckets, now),
		stateChanged: make(chan struct{}, 1),
	}
	pl.refusedTokens = newTokenSet(s.Window, now)
	pl.breaker = gobreaker.NewCircuitBreaker[providerAnswer](gobreaker.Settings{
		Name:         prereg.ProviderHealthKey(campaignID, p.Name),
		MaxRequests:  s.HalfOpenRequests,
		Interval:     s.Window,
		BucketPeriod: s.Window / time.Duration(s.Buckets),
		Timeout:      s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return done >= s.MinRequests && float64(c.TotalFailures) >= s.FailureRatio*float64(done) ||
				pl.refusalsWidespread(s)
		},
		// An invalid token is an answer. So is a refused request, while
		// refusals are rare; refusals of most distinct tokens are the
		// provider's (or the path's) trouble: a rotated credential, a WAF.
		IsSuccessful: func(err error) bool {
			var re *refusedError
			if errors.As(err, &re) {
				return !pl.refusalsWidespread(s)
			}
			return err == nil || errors.Is(err, errInvalidToken)
		},
		// Our own shutdown says nothing about the provider.
		IsExcluded: isShutdown,
		OnStateChange: func(string, gobreaker.State, gobreaker.State) {
			select {
			case pl.stateChanged <- struct{}{}:
			default:
			}
		},
	})
	return pl
}

// call asks the provider through the rate limit and the breaker. It
// returns gobreaker.ErrOpenState or ErrTooManyRequests without waiting
// for the rate limit when the breaker would refuse anyway.
func (p *pool) call(ctx context.Context, token string) (providerAnswer, error) {
	if p.breaker.State() == gobreaker.StateOpen {
		return providerAnswer{}, gobreaker.ErrOpenState
	}
	select {
	case p.calls <- struct{}{}:
		defer func() { <-p.calls }()
	case <-ctx.Done():
		return providerAnswer{}, ctx.Err()
	}
	if err := p.limiter.Wait(ctx); err != nil {
		return providerAnswer{}, err
	}
	return p.breaker.Execute(func() (providerAnswer, error) {
		a, err := p.client.verify(ctx, token)
		var pe *providerError
		var re *refusedError
		switch {
		case err == nil, errors.Is(err, errInvalidToken):
			p.window.add(answerOK)
		case errors.As(err, &re):
			if p.refusedTokens.add(token) {
				p.window.add(answerRefused)
			}
		case errors.As(err, &pe) && ctx.Err() == nil:
			p.window.add(answerFailed)
		}
		return a, err
	})
}

// healthyForOthers reports whether a failure now is more likely the
// message's fault than the provider's: the breaker is closed, the window
// has enough successes, and both its error rate and its share of refused
// tokens are below half the trip ratio.
func (p *pool) healthyForOthers(s BreakerSettings) bool {
	if p.breaker.State() != gobreaker.StateClosed {
		return false
	}
	ok, failed, refused := p.window.counts()
	half := s.FailureRatio / 2
	return ok >= int(s.MinRequests) && float64(failed) < half*float64(ok+failed) && float64(refused) < half*float64(ok+refused)
}

// othersFaredBetter reports whether, since a message last failed at
// prev, the provider answered the others at least as well as it failed
// them: a failure that repeats while others fail too is the onset of an
// outage, which a window still full of earlier successes cannot show,
// and must not count against the message. (Its own failures are among
// the bad answers, hence the one spared.)
func (p *pool) othersFaredBetter(prev time.Time) bool {
	ok, bad := p.window.sinceCounts(prev)
	return bad <= ok+1
}

// refusalsWidespread reports whether refusals are the provider's trouble,
// not the intents': at least MinRequests distinct tokens refused in the
// window, at least FailureRatio of the answers.
func (p *pool) refusalsWidespread(s BreakerSettings) bool {
	ok, _, refused := p.window.counts()
	return refused >= int(s.MinRequests) && float64(refused) >= s.FailureRatio*float64(ok+refused)
}

func (p *pool) health(now time.Time) prereg.ProviderHealth {
	ok, failed, _ := p.window.counts()
	var r float64
	if ok+failed > 0 {
		r = float64(failed) / float64(ok+failed)
	}
	return prereg.ProviderHealth{State: p.breaker.State().String(), ErrorRate: r, Updated: now.UTC()}
}

// callWindow counts calls that reached the provider over a rolling window
// of buckets: the error rate reported as health, and the evidence for
// healthyForOthers. The breaker's own counts reset on every state change,
// so they cannot serve for either.
type callWindow struct {
	mu      sync.Mutex
	now     func() time.Time
	step    time.Duration
	buckets []windowBucket
	// recent holds the last answers with their times, for sinceCounts:
	// a bucket is too coarse to tell the answers after a given failure
	// from those just before it.
	recent [recentAnswers]timedAnswer
	next   int
}

// recentAnswers bounds the answers sinceCounts can look back over; at a
// surge's rate that is a second or so, enough to see an outage begin.
const recentAnswers = 512

type timedAnswer struct {
	at int64 // UnixNano; 0 in a slot never written
	a  answer
}

type windowBucket struct {
	at                  int64 // step number the bucket holds
	ok, failed, refused int
}

// answer is how a call that reached the provider ended.
type answer int

const (
	answerOK      answer = iota // an answer, invalid_token included
	answerFailed                // a provider failure
	answerRefused               // a 4xx refusal of a token not refused before
)

func newCallWindow(span time.Duration, n int, now func() time.Time) *callWindow {
	return &callWindow{now: now, step: span / time.Duration(n), buckets: make([]windowBucket, n)}
}

func (w *callWindow) add(a answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now().UnixNano()
	at := now / int64(w.step)
	b := &w.buckets[int(at%int64(len(w.buckets)))]
	if b.at != at {
		*b = windowBucket{at: at}
	}
	w.recent[w.next] = timedAnswer{at: now, a: a}
	w.next = (w.next + 1) % len(w.recent)
	switch a {
	case answerOK:
		b.ok++
	case answerFailed:
		b.failed++
	case answerRefused:
		b.refused++
	}
}

func (w *callWindow) counts() (ok, failed, refused int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at := w.now().UnixNano() / int64(w.step)
	for _, b := range w.buckets {
		if at-b.at < int64(len(w.buckets)) {
			ok += b.ok
			failed += b.failed
			refused += b.refused
		}
	}
	return ok, failed, refused
}

// sinceCounts counts the answers recorded after t among the last
// recentAnswers: answers, and failures or refusals.
func (w *callWindow) sinceCounts(t time.Time) (ok, bad int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	after := t.UnixNano()
	for _, r := range w.recent {
		if r.at <= after {
			continue
		}
		if r.a == answerOK {
			ok++
		} else {
			bad++
		}
	}
	return ok, bad
}

// tokenSet remembers tokens (as seeded in-memory hashes, never the
// tokens) for between one and two spans: two generations, the older
// dropped when a span has passed.
type tokenSet struct {
	mu        sync.Mutex
	now       func() time.Time
	span      time.Duration
	seed      maphash.Seed
	since     time.Time
	cur, prev map[uint64]struct{}
}

func newTokenSet(span time.Duration, now func() time.Time) *tokenSet {
	return &tokenSet{now: now, span: span, seed: maphash.MakeSeed(), since: now(), cur: map[uint64]struct{}{}}
}

// add records a token and reports whether it was new.
func (t *tokenSet) add(token string) bool {
	h := maphash.String(t.seed, token)
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := t.now(); now.Sub(t.since) >= t.span {
		t.prev, t.cur, t.since = t.cur, map[uint64]struct{}{}, now
	}
	if _, ok := t.cur[h]; ok {
		return false
	}
	if _, ok := t.prev[h]; ok {
		return false
	}
	t.cur[h] = struct{}{}
	return true
}
