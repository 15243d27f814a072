package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
)

// ClinicSource lists a campaign's clinics; postgres.CampaignStore
// implements it. Intake reads it in the background with the campaigns,
// again only when a campaign was loaded since, never on a request.
type ClinicSource interface {
	Clinics(ctx context.Context, campaignID string) ([]campaign.Clinic, error)
}

// body is a JSON answer encoded once, with its ETag and the header
// values that serve it, so that serving it allocates no header.
type body struct {
	json    []byte
	etag    string
	etagH   []string
	lengthH []string
}

func newBody(v any) (body, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return body{}, err
	}
	sum := sha256.Sum256(data)
	b := body{json: append(data, '\n'), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	b.etagH, b.lengthH = []string{b.etag}, []string{strconv.Itoa(len(b.json))}
	return b, nil
}

// clinicIndex is a campaign's clinics as intake serves them: the answers
// of GET /v1/campaigns/{id}/regions and …/clinics?region= encoded once per
// load of the campaign, so that the lookup every citizen's page makes
// costs a map lookup and a write, and the set of clinic ids a submission
// is checked against.
type clinicIndex struct {
	ids      map[string]int // clinic id → index in list
	list     []campaign.Clinic
	regions  body
	byRegion map[string]body
	none     body // an unknown region, or one without clinics
}

// has reports whether the campaign has the clinic. A campaign without an
// inventory (no clinics loaded) checks nothing.
func (x *clinicIndex) has(id string) bool {
	if len(x.ids) == 0 {
		return true
	}
	_, ok := x.ids[id]
	return ok
}

type regionView struct {
	Code    string `json:"code"`
	Name    string `json:"name"`
	Sido    string `json:"sido"`
	Clinics int    `json:"clinics"`
}

type clinicView struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Region  string  `json:"region"`
	Address string  `json:"address"`
	Lat     float64 `json:"lat"`
	Lng     float64 `json:"lng"`
}

// newClinicIndex encodes a campaign's lists. Every campaign covers the
// country's regions (package region), each with the count of its clinics:
// a region without one still registers, and allocation places its people
// at the nearest clinic within the campaign's distance bound. Clinics are
// listed in the campaign's order.
func newClinicIndex(clinics []campaign.Clinic) (*clinicIndex, error) {
	x := &clinicIndex{ids: make(map[string]int, len(clinics)), list: clinics, byRegion: map[string]body{}}
	per := map[string][]clinicView{}
	for i, c := range clinics {
		x.ids[c.ID] = i
		per[c.Region] = append(per[c.Region], clinicView{ID: c.ID, Name: c.Name, Region: c.Region, Address: c.Address, Lat: c.Lat, Lng: c.Lng})
	}
	all := region.All()
	rv := make([]regionView, 0, len(all))
	for _, r := range all {
		rv = append(rv, regionView{Code: r.Code, Name: r.Name, Sido: r.Sido, Clinics: len(per[r.Code])})
	}
	var err error
	if x.regions, err = newBody(map[string]any{"regions": rv}); err != nil {
		return nil, err
	}
	if x.none, err = newBody(map[string]any{"clinics": []clinicView{}}); err != nil {
		return nil, err
	}
	for code, cs := range per {
		if x.byRegion[code], err = newBody(map[string]any{"clinics": cs}); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// clinicsOf returns a campaign's clinic index: built from the clinics the
// campaign came with, or read from the ClinicSource, reusing prev's when
// the campaigns were not loaded since (loaded is the latest load).
func (r *refresher) clinicsOf(ctx context.Context, c *campaign.Campaign, loaded time.Time, prev *catalog) (*clinicIndex, error) {
	clinics := c.Clinics
	if len(clinics) == 0 && r.clinics != nil {
		if pe, ok := prev.get(c.ID); ok && prev.loaded.Equal(loaded) && pe.clinics != nil {
			return pe.clinics, nil
		}
		var err error
		if clinics, err = r.clinics.Clinics(ctx, c.ID); err != nil {
			return nil, fmt.Errorf("refresh clinics of %s: %w", c.ID, err)
		}
	} else if pe, ok := prev.get(c.ID); ok && pe.c == c && pe.clinics != nil {
		return pe.clinics, nil
	}
	x, err := newClinicIndex(clinics)
	if err != nil {
		return nil, fmt.Errorf("encode clinics of %s: %w", c.ID, err)
	}
	return x, nil
}

// clinic returns the campaign's clinic with the id.
func (x *clinicIndex) clinic(id string) (campaign.Clinic, bool) {
	i, ok := x.ids[id]
	if !ok {
		return campaign.Clinic{}, false
	}
	return x.list[i], true
}

// serveRegions answers GET /v1/campaigns/{id}/regions.
func (s *Service) serveRegions(w http.ResponseWriter, r *http.Request) {
	e, ok := s.campaign(w, r.PathValue("id"))
	if !ok {
		return
	}
	s.serveBody(w, r, e.clinics.regions)
}

// serveClinics answers GET /v1/campaigns/{id}/clinics?region=CODE: the
// region's clinics, an empty list for a region the campaign has none in.
func (s *Service) serveClinics(w http.ResponseWriter, r *http.Request) {
	e, ok := s.campaign(w, r.PathValue("id"))
	if !ok {
		return
	}
	code := queryValue(r.URL.RawQuery, "region")
	if code == "" {
		invalid(w, FieldErrors{"region": "required: a 5-digit si/gun/gu code, e.g. 11680"})
		return
	}
	b, ok := e.clinics.byRegion[code]
	if !ok {
		b = e.clinics.none
	}
	s.serveBody(w, r, b)
}

// queryValue is the first value of key in a raw query string, as
// url.Values.Get would give it, without parsing the whole query into a
// map: a region code needs no unescaping, so the common case allocates
// nothing.
func queryValue(raw, key string) string {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			return u
		}
		return v
	}
	return ""
}

// varyEncoding is the lists' Vary header value.
var varyEncoding = []string{"Accept-Encoding"}

// serveBody writes a precomputed answer with the campaign's caching
// headers (the same ETag, Cache-Control and Vary as GET
// /v1/campaigns/{id}), or 304 when the client holds it. Header values
// are shared slices, set under canonical keys.
func (s *Service) serveBody(w http.ResponseWriter, r *http.Request, b body) {
	h := w.Header()
	h["Etag"] = b.etagH
	h["Cache-Control"] = s.cat.cacheControlH
	h["Vary"] = varyEncoding
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, b.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = b.lengthH
	_, _ = w.Write(b.json)
}

// checkClinic adds the field error of a clinic the campaign does not have
// to err (Validate's FieldErrors or nil). It allocates nothing when the
// clinic is known.
func checkClinic(err error, req *Request, x *clinicIndex) error {
	if req.Clinic == "" || x == nil || x.has(req.Clinic) {
		return err
	}
	fe, _ := err.(FieldErrors)
	if fe == nil {
		fe = FieldErrors{}
	}
	if _, bad := fe["clinic"]; !bad {
		fe["clinic"] = "not a clinic of this campaign"
	}
	return fe
}
