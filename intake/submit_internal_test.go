package intake

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
)

// TestValidateSubmission: a wrong Idempotency-Key is named in the same
// answer as the request's own wrong fields, so a client fixes all at once.
func TestValidateSubmission(t *testing.T) {
	t.Parallel()
	c, err := campaign.LoadFile("testdata/campaign.yaml")
	require.NoError(t, err)
	clinics, err := newClinicIndex([]campaign.Clinic{{ID: "c-11680-001", Region: "11680"}, {ID: "c-26350-001", Region: "26350"}})
	require.NoError(t, err)
	e := &entry{c: c, clinics: clinics}
	good := Request{
		Campaign: c.ID, Provider: "pass", IdentityToken: "tok-abc.def", Birthdate: "1990-08-19",
		Phone: "010-1234-5678", Region: "11680", DeviceID: "device-1",
	}
	badRegion := good
	badRegion.Region = "1"
	withClinic := good
	withClinic.Clinic = "c-11680-001"
	otherClinic := good
	otherClinic.Clinic = "c-99999-001"
	badBoth := badRegion
	badBoth.Clinic = "c-99999-001"
	for _, tc := range []struct {
		name    string
		req     Request
		idemKey string
		fields  []string // the fields of the 400; none when valid
	}{
		{name: "valid, without a key", req: good},
		{name: "valid, with a key", req: good, idemKey: "key-1"},
		{name: "a key too long", req: good, idemKey: strings.Repeat("k", maxIdemKey+1), fields: []string{"Idempotency-Key"}},
		{name: "a key not printable", req: good, idemKey: "k\x01", fields: []string{"Idempotency-Key"}},
		{name: "a wrong field and a wrong key", req: badRegion, idemKey: "k\x01", fields: []string{"Idempotency-Key", "region"}},
		{name: "a wrong field", req: badRegion, idemKey: "key-1", fields: []string{"region"}},
		{name: "a clinic of the campaign", req: withClinic},
		{name: "a clinic the campaign lacks", req: otherClinic, fields: []string{"clinic"}},
		{name: "a clinic and a region wrong", req: badBoth, fields: []string{"clinic", "region"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			v, ok := validateSubmission(rec, tc.req, e, tc.idemKey)
			if tc.fields == nil {
				require.True(t, ok, "want valid; answered %d %s", rec.Code, rec.Body)
				require.Equal(t, tc.req, v.Request)
				return
			}
			require.False(t, ok, "want refused")
			require.Equal(t, 400, rec.Code)
			var answer struct {
				Fields map[string]string `json:"fields"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &answer))
			var got []string
			for f := range answer.Fields {
				got = append(got, f)
			}
			require.ElementsMatch(t, tc.fields, got, "fields of the 400: %v", answer.Fields)
		})
	}
}

// The clinic check is on the submit path: a known clinic costs a map
// lookup and no allocation.
func TestCheckClinicAllocatesNothing(t *testing.T) {
	x, err := newClinicIndex([]campaign.Clinic{{ID: "c-11680-001", Region: "11680"}})
	require.NoError(t, err)
	req := Request{Campaign: "test-2021", Region: "11680", Clinic: "c-11680-001"}
	require.Zero(t, testing.AllocsPerRun(100, func() {
		if checkClinic(nil, &req, x) != nil {
			t.Fatal("a known clinic refused")
		}
	}))
	none, err := newClinicIndex(nil)
	require.NoError(t, err)
	require.NoError(t, checkClinic(nil, &Request{Clinic: "any"}, none), "a campaign without an inventory checks nothing")
}

func TestQueryValue(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"region=11680": "11680", "a=1&region=26350&region=1": "26350", "region=": "", "": "", "regionx=1": "",
		"region=%31%31680": "11680", "region=%zz": "", "x=%zz&region=11110": "11110",
	} {
		require.Equal(t, want, queryValue(raw, "region"), raw)
	}
}
