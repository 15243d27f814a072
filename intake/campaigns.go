package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/keys"
)

// CampaignSource lists the campaigns; postgres.CampaignStore implements it.
// Intake calls it at start and then in the background, never on a request.
type CampaignSource interface {
	List(ctx context.Context) ([]*campaign.Campaign, time.Time, error)
}

// Commitment is a window's lottery commitment as the scheduler published
// it: the hash of the seed, committed before the window closes, and the
// seed itself once an allocation revealed it (docs/ALLOCATION.md).
type Commitment struct {
	SeedHash    string    `json:"seed_hash"`
	CommittedAt time.Time `json:"committed_at"`
	Seed        string    `json:"seed,omitempty"`
}

// Commitments lists a campaign's lottery commitments by window id; the
// scheduler's store implements it. Intake reads it in the background with
// the campaigns.
type Commitments interface {
	Commitments(ctx context.Context, campaignID string) (map[string]Commitment, error)
}

// entry is one campaign as intake serves it.
type entry struct {
	c    *campaign.Campaign
	json []byte // GET /v1/campaigns/{id}
	etag string
	// hasher is the campaign's pinned HMAC key; nil when this process
	// lacks it, and submissions are shed.
	hasher *keys.Hasher
	// clinics are the campaign's regions and clinics (clinics.go).
	clinics *clinicIndex
	// next is, by window id, the "next" member of the 202 (next.go).
	next map[string][]byte
	// pause is the operator's pause of its submissions, if any.
	pause *Pause
}

// catalog is an immutable snapshot of the campaigns; a refresh swaps in a
// new one.
type catalog struct {
	byID  map[string]*entry
	order []*entry
	at    time.Time // when the campaigns were read
	// loaded is the campaigns' latest load, as the source said: their
	// clinics are read again only when it changes.
	loaded time.Time
	// stale is set once refreshes have failed for longer than
	// campaign.DefaultCacheMaxStale: the campaigns are then unavailable.
	stale bool
}

// get returns a campaign while the catalog may be served.
func (c *catalog) get(id string) (*entry, bool) {
	if c == nil || c.stale {
		return nil, false
	}
	e, ok := c.byID[id]
	return e, ok
}

// shedCampaignsStale is the shed metric's reason for a request refused
// because the campaigns could not be read for too long.
const shedCampaignsStale = "campaigns_stale"

// campaign returns the campaign a request names. When it cannot, it
// answers itself and reports false: 404 for a campaign that does not
// exist, 503 with Retry-After while the campaigns are too stale to serve
// (see refresher). It reads one atomic pointer and allocates nothing on
// the way to a campaign.
func (s *Service) campaign(w http.ResponseWriter, id string) (*entry, bool) {
	cat := s.cat.cur.Load()
	if cat != nil && cat.stale {
		s.shed(w, shedCampaignsStale)
		return nil, false
	}
	e, ok := cat.get(id)
	if !ok {
		httpapi.WriteError(w, httpapi.CodeNotFound, map[string]any{"what": "campaign"})
	}
	return e, ok
}

// campaignView is the JSON of GET /v1/campaigns/{id}.
type campaignView struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Timezone  string         `json:"timezone"`
	Cohort    cohortView     `json:"cohort"`
	Windows   []windowView   `json:"windows"`
	Providers []providerView `json:"providers"`
}

type cohortView struct {
	BornFrom string `json:"born_from"`
	BornTo   string `json:"born_to"`
}

type windowView struct {
	ID      string    `json:"id"`
	Opens   time.Time `json:"opens"`
	Closes  time.Time `json:"closes"`
	Digits  []int     `json:"digits"`
	CatchUp bool      `json:"catch_up,omitempty"`
	// Lottery is the window's published seed commitment, once committed.
	Lottery *Commitment `json:"lottery,omitempty"`
}

type providerView struct {
	Name   string                `json:"name"`
	Health prereg.ProviderHealth `json:"health"`
}

func viewWindow(w campaign.Window, loc *time.Location) windowView {
	digits := w.Digits
	if w.CatchUp {
		digits = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	}
	return windowView{ID: w.ID, Opens: w.Opens.In(loc), Closes: w.Closes.In(loc), Digits: digits, CatchUp: w.CatchUp}
}

func newEntry(c *campaign.Campaign, health map[string]prereg.ProviderHealth, lottery map[string]Commitment) (*entry, error) {
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	v := campaignView{
		ID: c.ID, Name: c.Name, Timezone: loc.String(),
		Cohort: cohortView{BornFrom: c.Cohort.BornFrom.Format(prereg.DateLayout), BornTo: c.Cohort.BornTo.Format(prereg.DateLayout)},
	}
	for _, w := range c.Windows {
		wv := viewWindow(w, loc)
		if cm, ok := lottery[w.ID]; ok {
			wv.Lottery = &cm
		}
		v.Windows = append(v.Windows, wv)
	}
	for _, p := range c.Providers {
		h, ok := health[prereg.ProviderHealthKey(c.ID, p.Name)]
		if !ok {
			h = prereg.ProviderHealth{State: "unknown"}
		}
		v.Providers = append(v.Providers, providerView{Name: p.Name, Health: h})
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode campaign %s: %w", c.ID, err)
	}
	sum := sha256.Sum256(data)
	return &entry{c: c, json: append(data, '\n'), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}, nil
}

// refresher keeps the catalog current.
//
// It follows campaign.Cache's rule: when a refresh fails, the last good
// catalog is served while it is younger than campaign.DefaultCacheMaxStale,
// since refusing every submission on a short database outage loses more
// than taking them against campaigns a few minutes old. Past that bound the
// failing refresh marks the catalog stale and every campaign is answered as
// unavailable (503 with Retry-After) until a refresh succeeds. The bound is
// checked on refresh, not per request, so that the hot path stays one
// atomic load; it is therefore honoured to within one refresh interval.
type refresher struct {
	source  CampaignSource
	clinics ClinicSource // nil: only the clinics the campaigns come with
	// cacheControlH is the Cache-Control of the campaign's lists.
	cacheControlH []string
	lottery       Commitments // nil: no commitments shown
	pauses        Pauses      // nil: never paused
	js            jetstream.JetStream
	log           *slog.Logger
	now           func() time.Time
	cur           atomic.Pointer[catalog]
	errors        atomic.Int64
	// hasher resolves each campaign's pinned key; keys is raised while
	// a campaign is pinned to a key this process was not given.
	hasher *keys.Hasher
	keys   *keys.Alarm
}

// refresh reads the campaigns and the providers' health and swaps in a new
// catalog. Health is best effort: without the bucket every provider is
// "unknown". On an error it applies the staleness bound.
func (r *refresher) refresh(ctx context.Context) error {
	next, err := r.read(ctx)
	if err != nil {
		r.expire()
		return err
	}
	r.cur.Store(next)
	return nil
}

func (r *refresher) read(ctx context.Context) (*catalog, error) {
	cs, loaded, err := r.source.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh campaigns: %w", err)
	}
	health := r.health(ctx, cs)
	pauses, err := r.readPauses(ctx)
	if err != nil {
		return nil, err
	}
	prev := r.cur.Load()
	next := &catalog{byID: make(map[string]*entry, len(cs)), at: r.now(), loaded: loaded}
	var missing []error
	for _, c := range cs {
		e, err := newEntry(c, health, r.commitments(ctx, c.ID))
		if err != nil {
			return nil, err
		}
		if e.clinics, err = r.clinicsOf(ctx, c, loaded, prev); err != nil {
			return nil, err
		}
		e.next = nextBodies(c)
		if p, ok := pauses[c.ID]; ok {
			e.pause = &p
		}
		if e.hasher, err = r.hasher.Pinned(c.HMACKey); err != nil {
			missing = append(missing, err)
		}
		next.byID[c.ID] = e
		next.order = append(next.order, e)
	}
	r.keys.Set(missing)
	return next, nil
}

// expire marks the catalog stale once it is older than the bound.
func (r *refresher) expire() {
	cur := r.cur.Load()
	if cur == nil || cur.stale || r.now().Sub(cur.at) < campaign.DefaultCacheMaxStale {
		return
	}
	r.log.Error("campaigns unreadable for too long; answering them as unavailable",
		slog.Time("read_at", cur.at), slog.Duration("max_stale", campaign.DefaultCacheMaxStale))
	r.cur.Store(&catalog{byID: cur.byID, order: cur.order, at: cur.at, loaded: cur.loaded, stale: true})
}

// commitments reads a campaign's lottery commitments, best effort: a
// failure leaves them out until the next refresh.
func (r *refresher) commitments(ctx context.Context, id string) map[string]Commitment {
	if r.lottery == nil {
		return nil
	}
	cm, err := r.lottery.Commitments(ctx, id)
	if err != nil {
		r.log.Warn("lottery commitments unavailable", slog.String("campaign", id), slog.Any("err", err))
		return nil
	}
	return cm
}

func (r *refresher) health(ctx context.Context, cs []*campaign.Campaign) map[string]prereg.ProviderHealth {
	out := map[string]prereg.ProviderHealth{}
	if r.js == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, err := r.js.KeyValue(ctx, prereg.ProviderHealthBucket)
	if err != nil {
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			r.log.Debug("provider health unavailable", slog.Any("err", err))
		}
		return out
	}
	for _, c := range cs {
		for _, p := range c.Providers {
			key := prereg.ProviderHealthKey(c.ID, p.Name)
			ent, err := kv.Get(ctx, key)
			if err != nil {
				continue
			}
			var h prereg.ProviderHealth
			if json.Unmarshal(ent.Value(), &h) != nil {
				continue
			}
			switch h.State {
			case "closed", "half-open", "open":
			default:
				h.State = "unknown"
			}
			out[key] = h
		}
	}
	return out
}

func (r *refresher) loop(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
				r.errors.Add(1)
				r.log.Warn("campaign refresh failed", slog.Any("err", err))
			}
		}
	}
}
