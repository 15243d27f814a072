package intake_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/region"
)

// clinicCampaign is the test campaign with a small inventory.
func clinicCampaign(tb testing.TB) *campaign.Campaign {
	tb.Helper()
	c := testCampaign(tb)
	c.Clinics = []campaign.Clinic{
		{ID: "c-11680-001", Name: "강남구 보건소", Region: "11680", Lat: 37.5173, Lng: 127.0474, Capacity: 60, Address: "서울특별시 강남구 선릉로 668"},
		{ID: "c-11680-002", Name: "강남구 예방접종센터 1", Region: "11680", Lat: 37.4926, Lng: 127.0463, Capacity: 40, Address: "서울특별시 강남구 언주로 211"},
		{ID: "c-26350-001", Name: "해운대구 보건소", Region: "26350", Lat: 35.1631, Lng: 129.1636, Capacity: 50, Address: "부산광역시 해운대구 중동2로 11"},
	}
	return c
}

// GET …/regions and …/clinics?region= answer from memory, with the
// campaign's caching headers, 304 on a matching If-None-Match; an
// unknown campaign is the campaign route's 404, an unknown region an
// empty list.
func TestRegionAndClinicLists(t *testing.T) {
	t.Parallel()
	e := setup(t, func(cfg *intake.Config) { cfg.Campaigns = staticCampaigns{clinicCampaign(t)} })
	base := "/v1/campaigns/test-2021"

	regions := e.get(t, base+"/regions")
	require.Equal(t, 200, regions.Status)
	list := regions.Body["regions"].([]any)
	require.Len(t, list, len(region.All()), "every region of the country")
	counts := map[string]float64{}
	for _, r := range list {
		m := r.(map[string]any)
		require.NotEmpty(t, m["name"])
		counts[m["code"].(string)] = m["clinics"].(float64)
	}
	require.Equal(t, 2.0, counts["11680"])
	require.Equal(t, 0.0, counts["11110"])
	require.NotEmpty(t, regions.Header.Get("ETag"))
	require.Contains(t, regions.Header.Get("Cache-Control"), "max-age=")
	require.Equal(t, 304, e.get(t, base+"/regions", "If-None-Match", regions.Header.Get("ETag")).Status)

	gangnam := e.get(t, base+"/clinics?region=11680")
	require.Equal(t, 200, gangnam.Status)
	clinics := gangnam.Body["clinics"].([]any)
	require.Len(t, clinics, 2)
	first := clinics[0].(map[string]any)
	require.Equal(t, "c-11680-001", first["id"])
	require.Equal(t, "강남구 보건소", first["name"])
	require.Equal(t, "11680", first["region"])
	require.Equal(t, "서울특별시 강남구 선릉로 668", first["address"])
	etag := gangnam.Header.Get("ETag")
	require.NotEmpty(t, etag)
	require.Equal(t, 304, e.get(t, base+"/clinics?region=11680", "If-None-Match", etag).Status)
	busan := e.get(t, base+"/clinics?region=26350", "If-None-Match", etag)
	require.Equal(t, 200, busan.Status, "another region's list has another ETag")
	require.Len(t, busan.Body["clinics"], 1)

	for _, code := range []string{"11110", "99999", "x"} {
		none := e.get(t, base+"/clinics?region="+code)
		require.Equal(t, 200, none.Status, code)
		require.Equal(t, []any{}, none.Body["clinics"], code)
	}
	require.Equal(t, 400, e.get(t, base+"/clinics").Status, "the region is required")

	for _, path := range []string{"/v1/campaigns/no-such/regions", "/v1/campaigns/no-such/clinics?region=11680"} {
		a := e.get(t, path)
		require.Equal(t, 404, a.Status, path)
		require.Equal(t, "not_found", a.Body["error"])
		require.Equal(t, "campaign", a.Body["what"])
	}
}

// A submission naming a clinic the campaign lacks is refused with a field
// error, on the fasthttp front and on net/http alike; a known clinic is
// accepted, and the 202 says when the round is allocated and the SMS come.
func TestSubmitChecksClinicAndSaysWhatNext(t *testing.T) {
	t.Parallel()
	e := setup(t, func(cfg *intake.Config) { cfg.Campaigns = staticCampaigns{clinicCampaign(t)} })
	for _, url := range []string{e.url, e.stdURL} {
		bad := postTo(t, url, body(map[string]any{"clinic": "c-99999-001"}))
		require.Equal(t, 400, bad.Status, url)
		require.Equal(t, "invalid", bad.Body["error"])
		require.Contains(t, bad.Body["fields"], "clinic")

		bad = postTo(t, url, body(map[string]any{"clinic": "c-99999-001", "region": "99999"}))
		require.Equal(t, 400, bad.Status, url)
		require.Contains(t, bad.Body["fields"], "clinic")
		require.Contains(t, bad.Body["fields"], "region", "one 400 names every wrong field")
	}
	ok := e.post(t, body(map[string]any{"clinic": "c-11680-002", "device_id": "device-2"}))
	require.Equal(t, 202, ok.Status, "%v", ok.Body)
	next := ok.Body["next"].(map[string]any)
	// d9 closes 2021-08-10 18:00; its round is an hour later. 1,000,000
	// expected people × 1/10 at 200 SMS/s is 500 s, plus 30 minutes.
	require.Equal(t, "2021-08-10T19:00:00+09:00", next["round_at"])
	require.Equal(t, "2021-08-10T19:00:00+09:00", next["sms_from"])
	require.Equal(t, "2021-08-10T19:40:00+09:00", next["sms_until"])
}

func postTo(tb testing.TB, url string, b any) answer {
	tb.Helper()
	e := &env{url: url}
	return e.post(tb, b)
}

// countingClinics counts the reads of the clinics.
type countingClinics struct {
	intake.ClinicSource
	calls atomic.Int64
}

func (c *countingClinics) Clinics(ctx context.Context, id string) ([]campaign.Clinic, error) {
	c.calls.Add(1)
	return c.ClinicSource.Clinics(ctx, id)
}

// With the campaigns in PostgreSQL the clinics are read from there, again
// only when a campaign is loaded again; the status lookup says what comes
// next: the round while registered, the appointment once allocated.
func TestClinicsFromStoreAndLookupNext(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	store := &postgres.CampaignStore{Pool: db.Pool}
	_, err := store.Load(ctx, clinicCampaign(t))
	require.NoError(t, err)
	clinics := &countingClinics{ClinicSource: store}
	e := setup(t, func(c *intake.Config) {
		c.Campaigns = store
		c.Clinics = clinics
		c.Statuses = &postgres.StatusStore{Pool: db.Pool}
		c.Refresh = time.Hour // refreshes come from the test only
	})
	require.EqualValues(t, 1, clinics.calls.Load())
	require.NoError(t, e.svc.Refresh(ctx))
	require.EqualValues(t, 1, clinics.calls.Load(), "no load since: the clinics are not read again")
	gangnam := e.get(t, "/v1/campaigns/test-2021/clinics?region=11680")
	require.Equal(t, 200, gangnam.Status)
	require.Len(t, gangnam.Body["clinics"], 2)
	require.Equal(t, 400, e.post(t, body(map[string]any{"clinic": "c-99999-001"})).Status)

	a := e.post(t, body(map[string]any{"clinic": "c-11680-001"}))
	require.Equal(t, 202, a.Status, "%v", a.Body)
	receipt := a.Body["receipt"].(string)
	var regID int64
	require.NoError(t, db.Pool.QueryRow(ctx, `WITH r AS (
		INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, clinic, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ('test-2021', 'idk', 0, 'd9', '1990-08-19', '11680', 'c-11680-001', 'k', '\x00', $1, 'dev', now()) RETURNING id),
		d AS (INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, registration_id, device_key, birthdate, received_at)
		SELECT 'test-2021', $1, 0, 'd9', 'registered', 'pass', r.id, 'dev', '1990-08-19', now() FROM r)
		SELECT id FROM r`, receipt).Scan(&regID))
	got := e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-19")
	require.Equal(t, 200, got.Status)
	require.Equal(t, "registered", got.Body["status"])
	require.Equal(t, map[string]any{"round_at": "2021-08-10T19:00:00+09:00", "sms_from": "2021-08-10T19:00:00+09:00",
		"sms_until": "2021-08-10T19:40:00+09:00"}, got.Body["next"])

	e.clock.Set(at("2021-08-10 19:00:01"))
	got = e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-19")
	require.Equal(t, "2021-08-11T19:00:00+09:00", got.Body["next"].(map[string]any)["round_at"],
		"past its round without a place, a registration rolls into the next")

	_, err = db.Pool.Exec(ctx, `INSERT INTO appointments (campaign, registration_id, clinic, day, band) VALUES ('test-2021', $1, 'c-11680-001', '2021-08-27', 1)`, regID)
	require.NoError(t, err)
	got = e.get(t, "/v1/intents/"+receipt+"?birthdate=1990-08-19")
	require.Equal(t, "scheduled", got.Body["status"])
	require.Equal(t, map[string]any{"clinic": "c-11680-001", "clinic_name": "강남구 보건소", "address": "서울특별시 강남구 선릉로 668",
		"start": "2021-08-27T13:00:00+09:00", "end": "2021-08-27T15:00:00+09:00"}, got.Body["next"])

	// A reload of the campaign (a clinic added) is read at the next refresh.
	more := clinicCampaign(t)
	more.Clinics = append(more.Clinics, campaign.Clinic{ID: "c-11680-003", Name: "강남구 예방접종센터 2", Region: "11680", Lat: 37.5, Lng: 127.05, Capacity: 10, Address: "서울특별시 강남구 테헤란로 1"})
	_, err = store.Load(ctx, more)
	require.NoError(t, err)
	require.NoError(t, e.svc.Refresh(ctx))
	require.EqualValues(t, 2, clinics.calls.Load())
	gangnam2 := e.get(t, "/v1/campaigns/test-2021/clinics?region=11680", "If-None-Match", gangnam.Header.Get("ETag"))
	require.Equal(t, 200, gangnam2.Status, "the list changed, so did its ETag")
	require.Len(t, gangnam2.Body["clinics"], 3)
}
