package campaign

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prereg/prereg"
)

// Source is where a Cache loads a campaign from. Load returns an error
// wrapping prereg.ErrCampaignNotFound for a campaign that does not exist.
type Source interface {
	Load(ctx context.Context, id string) (*Campaign, error)
}

// SourceFunc adapts a function, such as (*postgres.CampaignStore).Get, to
// a Source.
type SourceFunc func(ctx context.Context, id string) (*Campaign, error)

// Load calls f.
func (f SourceFunc) Load(ctx context.Context, id string) (*Campaign, error) { return f(ctx, id) }

// Default bounds of a Cache.
const (
	DefaultCacheTTL      = 30 * time.Second
	DefaultCacheMaxStale = 10 * time.Minute
)

// CacheConfig configures a Cache. Source is required.
type CacheConfig struct {
	Source Source
	// TTL is how long a loaded campaign is served before the next Get
	// loads it again [DefaultCacheTTL]. A reload of the campaign file
	// reaches the stages within it.
	TTL time.Duration
	// MaxStale bounds how old the last good copy may be when a reload
	// fails for any reason but the campaign being gone; past it the
	// error is returned [DefaultCacheMaxStale].
	MaxStale time.Duration
	// Now is the clock [time.Now].
	Now func() time.Time
}

// Cache keeps the campaigns a stage reads on every message, so that the
// store is asked about each at most once per TTL.
//
// The rule, the same in every stage: a copy younger than TTL is served
// as is. An older one is reloaded; concurrent Gets of one campaign share
// one load. When the load fails because the campaign does not exist, the
// error is returned and the copy dropped. When it fails otherwise (the
// store is unreachable, a time-out), the last good copy is served while
// it is younger than MaxStale, since a pipeline that stops on a short
// database outage would lose more than one that uses a campaign a few
// minutes old; the next Get tries the store again.
type Cache struct {
	src      Source
	ttl      time.Duration
	maxStale time.Duration
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]cached
	loads   map[string]*load
}

type cached struct {
	c  *Campaign
	at time.Time // when c was loaded
}

// load is one load in flight; done is closed when c and err are set.
type load struct {
	done chan struct{}
	c    *Campaign
	err  error
}

// NewCache validates the configuration and returns an empty cache.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if cfg.Source == nil {
		return nil, errors.New("campaign cache: Source is required")
	}
	cfg.TTL = cmp.Or(cfg.TTL, DefaultCacheTTL)
	cfg.MaxStale = cmp.Or(cfg.MaxStale, DefaultCacheMaxStale)
	if cfg.TTL < 0 || cfg.MaxStale < cfg.TTL {
		return nil, fmt.Errorf("campaign cache: want 0 < TTL (%v) ≤ MaxStale (%v)", cfg.TTL, cfg.MaxStale)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{
		src: cfg.Source, ttl: cfg.TTL, maxStale: cfg.MaxStale, now: cfg.Now,
		entries: map[string]cached{}, loads: map[string]*load{},
	}, nil
}

// Get returns the campaign, from the cache or the source by the rule of
// Cache.
func (k *Cache) Get(ctx context.Context, id string) (*Campaign, error) {
	k.mu.Lock()
	e, ok := k.entries[id]
	if ok && k.now().Sub(e.at) < k.ttl {
		k.mu.Unlock()
		return e.c, nil
	}
	l, inFlight := k.loads[id]
	if !inFlight {
		l = &load{done: make(chan struct{})}
		k.loads[id] = l
	}
	k.mu.Unlock()

	if !inFlight {
		k.load(ctx, id, l)
	} else {
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("campaign %q: %w", id, context.Cause(ctx))
		}
	}
	if l.err == nil {
		return l.c, nil
	}
	if errors.Is(l.err, prereg.ErrCampaignNotFound) {
		return nil, l.err
	}
	k.mu.Lock()
	e, ok = k.entries[id]
	k.mu.Unlock()
	if ok && k.now().Sub(e.at) < k.maxStale {
		return e.c, nil
	}
	return nil, l.err
}

// load reads the campaign from the source, records the outcome and wakes
// the Gets waiting for it.
func (k *Cache) load(ctx context.Context, id string, l *load) {
	c, err := k.src.Load(ctx, id)
	k.mu.Lock()
	switch {
	case err == nil:
		k.entries[id] = cached{c: c, at: k.now()}
	case errors.Is(err, prereg.ErrCampaignNotFound):
		delete(k.entries, id)
	}
	delete(k.loads, id)
	k.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("campaign %q: %w", id, err)
	}
	l.c, l.err = c, err
	close(l.done)
}

// Put caches a campaign read by other means, such as a stage's start-up
// listing, as just loaded.
func (k *Cache) Put(c *Campaign) {
	k.mu.Lock()
	k.entries[c.ID] = cached{c: c, at: k.now()}
	k.mu.Unlock()
}
