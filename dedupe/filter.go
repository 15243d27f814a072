package dedupe

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// Filters holds one Bloom filter of registered identity keys per
// (campaign, shard) that a worker owns. A filter only ever says "definitely
// new" or "maybe seen"; the database settles the second.
type Filters struct {
	// FPRate, when set, overrides the campaigns' false-positive rate (tests
	// force 50 % to show that it costs time, never correctness).
	FPRate float64

	mu      sync.RWMutex
	filters map[filterKey]*bloom.BloomFilter
}

type filterKey struct {
	campaign string
	shard    int
}

// NewFilters returns an empty set of filters.
func NewFilters(fpRate float64) *Filters {
	return &Filters{FPRate: fpRate, filters: map[filterKey]*bloom.BloomFilter{}}
}

// Sizing returns the capacity and false-positive rate of one shard's
// filter: the campaign's expected people spread over its shards.
func (f *Filters) Sizing(c *campaign.Campaign) (n uint, p float64) {
	p = c.Dedupe.BloomFPRate
	if f.FPRate > 0 {
		p = f.FPRate
	}
	n = uint(math.Ceil(float64(c.Dedupe.ExpectedPeople) / float64(max(1, c.Shards))))
	return max(n, 1), p
}

// Has reports whether the campaign's filters are built.
func (f *Filters) Has(campaignID string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.filters[filterKey{campaignID, -1}]
	return ok
}

// Rebuild builds the campaign's filters for the owned shards (all when
// owned is nil) from the registrations in the store. It replaces whatever
// was there.
func (f *Filters) Rebuild(ctx context.Context, store Store, c *campaign.Campaign, owned []int) error {
	n, p := f.Sizing(c)
	built := map[filterKey]*bloom.BloomFilter{}
	shards := owned
	if shards == nil {
		shards = make([]int, c.Shards)
		for i := range shards {
			shards[i] = i
		}
	}
	for _, s := range shards {
		if s < c.Shards {
			built[filterKey{c.ID, s}] = bloom.NewWithEstimates(n, p)
		}
	}
	err := store.RegisteredKeys(ctx, c.ID, owned, func(key string) {
		if bf := built[filterKey{c.ID, prereg.Shard(key, c.Shards)}]; bf != nil {
			bf.AddString(key)
		}
	})
	if err != nil {
		return fmt.Errorf("rebuild bloom filters of %s: %w", c.ID, err)
	}
	built[filterKey{c.ID, -1}] = nil // marks the campaign as built
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.filters {
		if k.campaign == c.ID {
			delete(f.filters, k)
		}
	}
	for k, v := range built {
		f.filters[k] = v
	}
	return nil
}

// MaybeSeen reports whether the identity key may be registered. A shard
// without a filter answers true: without a filter the database decides.
func (f *Filters) MaybeSeen(campaignID string, shard int, identityKey string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	bf := f.filters[filterKey{campaignID, shard}]
	return bf == nil || bf.TestString(identityKey)
}

// Add records registered identity keys.
func (f *Filters) Add(campaignID string, shard int, identityKey string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if bf := f.filters[filterKey{campaignID, shard}]; bf != nil {
		bf.AddString(identityKey)
	}
}

// Bytes is the memory the filters' bit sets take.
func (f *Filters) Bytes() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var b int
	for _, bf := range f.filters {
		if bf != nil {
			b += int(bf.Cap()+7) / 8
		}
	}
	return b
}
