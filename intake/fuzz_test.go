package intake_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// FuzzDecodeRequest: the decoder never panics, accepts only what
// re-encodes to an equivalent object, and names only safe fields in its
// errors. The seed corpus is in testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"campaign":"test-2021","provider":"pass","identity_token":"t","birthdate":"1990-08-19","phone":"010-1234-5678","region":"11680","device_id":"d"}`))
	f.Add([]byte(`{"campaign":"x","nickname":"y"}`))
	f.Add([]byte(`{"region":11680}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte("{\"campaign\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := intake.DecodeRequest(data)
		if err != nil {
			var fe intake.FieldErrors
			require.ErrorAs(t, err, &fe)
			require.NotEmpty(t, fe)
			for k := range fe {
				require.LessOrEqual(t, len(k), 40, "field names in errors are short identifiers")
				require.NotContains(t, k, "\"")
			}
			return
		}
		require.LessOrEqual(t, len(data), intake.MaxBody)
		again, err := json.Marshal(req)
		require.NoError(t, err)
		back, err := intake.DecodeRequest(again)
		require.NoError(t, err)
		require.Equal(t, req, back)
	})
}

// FuzzValidate: the validator never panics, and what it accepts is inside
// every bound the rest of the pipeline relies on.
func FuzzValidate(f *testing.F) {
	f.Add("pass", "tok", "1990-08-19", "010-1234-5678", "11680", "", "", "device-1")
	f.Add("kakao", "t", "1996-02-29", "+82 10 1234 5678", "26350", "c-1", "2021-08-27", "d")
	f.Add("pass", "t", "1997-02-29", "02-123-4567", "00000", "<x>", "tomorrow", "")
	f.Add("pass", "t k", "2003-12-31", "8201012345678", "11110", "a.b_c-d", "2021-02-29", "\x00")
	c := testCampaign(f)
	f.Fuzz(func(t *testing.T, provider, token, birth, phone, region, clinic, earliest, device string) {
		req := intake.Request{Campaign: c.ID, Provider: provider, IdentityToken: token, Birthdate: birth, Phone: phone,
			Region: region, Clinic: clinic, Earliest: earliest, DeviceID: device}
		v, err := intake.Validate(req, c)
		if err != nil {
			var fe intake.FieldErrors
			require.ErrorAs(t, err, &fe)
			require.NotEmpty(t, fe)
			for _, msg := range fe {
				// The fixed example in the phone message may contain a
				// short input by chance ("4-56"); only the rest counts.
				msg = strings.ReplaceAll(msg, "010-1234-5678", "")
				for _, secret := range []string{token, phone, device} {
					if len(secret) > 3 {
						require.NotContains(t, msg, secret, "errors never repeat a value")
					}
				}
			}
			return
		}
		require.True(t, c.Cohort.Contains(v.Birth))
		require.True(t, intake.KnownRegion(v.Region))
		require.True(t, strings.HasPrefix(v.Phone, "+8210") || strings.HasPrefix(v.Phone, "+821"), v.Phone)
		require.LessOrEqual(t, len(v.Phone), len("+821012345678"))
		require.LessOrEqual(t, len(v.IdentityToken), 2048)
		require.LessOrEqual(t, len(v.DeviceID), 128)
		p, ok := intake.NormalizePhone(v.Phone)
		require.True(t, ok, "E.164 output is itself accepted")
		require.Equal(t, v.Phone, p)
	})
}

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"010-1234-5678", "+821012345678"},
		{"01012345678", "+821012345678"},
		{"010 1234 5678", "+821012345678"},
		{"+82 10-1234-5678", "+821012345678"},
		{"+82 (0)10 1234 5678", "+821012345678"},
		{"82-10-1234-5678", "+821012345678"},
		{"011-123-4567", "+82111234567"},
		{"016-1234-5678", "+821612345678"},
		{"010-123-4567", ""},  // 010 numbers have 8 digits
		{"02-1234-5678", ""},  // Seoul landline
		{"070-1234-5678", ""}, // internet phone
		{"+1 415 555 0100", ""},
		{"010-1234-5678 ext 1", ""},
		{"", ""},
		{"0101234567890", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := intake.NormalizePhone(tt.in)
			require.Equal(t, tt.want != "", ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRegions(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"11110", "11680", "26350", "50110"} {
		require.True(t, intake.KnownRegion(code), code)
	}
	for _, code := range []string{"", "11", "99999", "1168O", "#"} {
		require.False(t, intake.KnownRegion(code), code)
	}
}
