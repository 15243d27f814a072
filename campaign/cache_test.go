package campaign_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// fakeSource counts loads and answers what the test sets: a campaign
// whose Name is the load's number, or err.
type fakeSource struct {
	mu    sync.Mutex
	loads int
	err   error
	gate  chan struct{} // when set, a load waits for it to close
}

func (s *fakeSource) Load(ctx context.Context, id string) (*campaign.Campaign, error) {
	s.mu.Lock()
	s.loads++
	n, err, gate := s.loads, s.err, s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return &campaign.Campaign{ID: id, Name: fmt.Sprint(n)}, nil
}

func (s *fakeSource) set(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *fakeSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

var errDown = errors.New("store unreachable")

func newCache(tb testing.TB, src campaign.Source) *campaign.Cache {
	tb.Helper()
	k, err := campaign.NewCache(campaign.CacheConfig{Source: src, TTL: 30 * time.Second, MaxStale: 5 * time.Minute})
	require.NoError(tb, err)
	return k
}

// get returns the Name of the campaign Get answers (the number of the
// load it came from), or the error.
func get(k *campaign.Cache) (string, error) {
	c, err := k.Get(context.Background(), "c1")
	if err != nil {
		return "", err
	}
	return c.Name, nil
}

func TestCacheServesUntilTTLThenReloads(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		k := newCache(t, src)
		name, err := get(k)
		require.NoError(t, err)
		require.Equal(t, "1", name)

		time.Sleep(29 * time.Second)
		name, err = get(k)
		require.NoError(t, err)
		require.Equal(t, "1", name, "a copy younger than the TTL is served without a load")
		require.Equal(t, 1, src.count())

		time.Sleep(time.Second)
		name, err = get(k)
		require.NoError(t, err)
		require.Equal(t, "2", name, "a copy as old as the TTL is reloaded")
	})
}

func TestCacheServesStaleOnStoreErrorUpToMaxStale(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		k := newCache(t, src)
		_, err := get(k)
		require.NoError(t, err)

		src.set(errDown)
		time.Sleep(time.Minute)
		name, err := get(k)
		require.NoError(t, err, "the store is down: the last good copy is served")
		require.Equal(t, "1", name)
		require.Equal(t, 2, src.count(), "a stale copy does not stop the cache trying the store")

		time.Sleep(4*time.Minute - time.Second)
		name, err = get(k)
		require.NoError(t, err)
		require.Equal(t, "1", name, "still younger than MaxStale")

		time.Sleep(time.Second)
		_, err = get(k)
		require.ErrorIs(t, err, errDown, "a copy as old as MaxStale is not served")

		src.set(nil)
		name, err = get(k)
		require.NoError(t, err)
		require.Equal(t, "5", name, "the store is back: a fresh copy")
	})
}

func TestCacheNeverServesACampaignThatIsGone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		k := newCache(t, src)
		_, err := get(k)
		require.NoError(t, err)

		src.set(fmt.Errorf("get: %w", prereg.ErrCampaignNotFound))
		time.Sleep(time.Minute)
		_, err = get(k)
		require.ErrorIs(t, err, prereg.ErrCampaignNotFound)

		src.set(errDown)
		_, err = get(k)
		require.ErrorIs(t, err, errDown, "the copy of a campaign found gone is dropped, not served on a later store error")
	})
}

func TestCacheErrorWithoutCopy(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{err: errDown}
		k := newCache(t, src)
		_, err := get(k)
		require.ErrorIs(t, err, errDown)
		require.ErrorContains(t, err, `campaign "c1"`)
	})
}

func TestCacheSharesOneLoad(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		src := &fakeSource{gate: gate}
		k := newCache(t, src)
		const n = 8
		names := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				name, err := get(k)
				if err == nil {
					names[i] = name
				}
			})
		}
		synctest.Wait() // every Get is blocked: one in the load, the others on it
		require.Equal(t, 1, src.count(), "concurrent Gets of one campaign share one load")
		close(gate)
		wg.Wait()
		for i, name := range names {
			require.Equal(t, "1", name, "Get %d", i)
		}
	})
}

func TestCacheWaiterStopsOnItsContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		src := &fakeSource{gate: gate}
		k := newCache(t, src)
		go func() { _, _ = get(k) }()
		synctest.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := k.Get(ctx, "c1")
		require.ErrorIs(t, err, context.DeadlineExceeded, "a waiting Get returns when its own context ends")
		close(gate)
	})
}

func TestCachePut(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		k := newCache(t, src)
		k.Put(&campaign.Campaign{ID: "c1", Name: "listed"})
		name, err := get(k)
		require.NoError(t, err)
		require.Equal(t, "listed", name)
		require.Zero(t, src.count(), "a campaign put in is served without a load")
	})
}

func TestNewCacheValidates(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]campaign.CacheConfig{
		"no source":              {},
		"negative TTL":           {Source: &fakeSource{}, TTL: -time.Second},
		"MaxStale below the TTL": {Source: &fakeSource{}, TTL: time.Minute, MaxStale: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := campaign.NewCache(cfg)
			require.Error(t, err)
		})
	}
}
