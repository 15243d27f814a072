package intake_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	regions "github.com/prereg/prereg/region"
)

// FuzzDecodeRequest: the decoder never panics, accepts exactly what
// encoding/json's strict decoding accepts (one object, known string
// fields, nothing after it) with the same values, accepts only what
// re-encodes to an equivalent object, and names only safe fields in its
// errors. The seed corpus is in testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"campaign":"test-2021","provider":"pass","identity_token":"t","birthdate":"1990-08-19","phone":"010-1234-5678","region":"11680","device_id":"d"}`))
	f.Add([]byte(`{"campaign":"x","nickname":"y"}`))
	f.Add([]byte(`{"region":11680}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte("{\"campaign\":\"\xff\"}"))
	f.Add([]byte(`{"Campaign":"x","CAMPAIGN":"y"}`))
	f.Add([]byte(`{"campaign":"x","campaign":"y"}`))
	f.Add([]byte(`{"campaign":"\u00e9\ud800"} `))
	f.Add([]byte(`{"campaign":null,"region":"1"}`))
	f.Add([]byte(`{"campaign":"x"}x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := intake.DecodeRequest(data)
		std, stdErr := strictStd(data)
		require.Equal(t, stdErr == nil, err == nil, "accepted by encoding/json: %v", stdErr == nil)
		if err == nil {
			require.Equal(t, std, req, "the same values as encoding/json")
		}
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

// strictStd is the intake's decoding done by encoding/json alone: the
// reference the fast decoder is held to.
func strictStd(data []byte) (intake.Request, error) {
	var req intake.Request
	if len(data) > intake.MaxBody || !utf8.Valid(data) {
		return req, errors.New("too large or not UTF-8")
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return req, errors.New("not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return intake.Request{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return intake.Request{}, errors.New("more than one value")
	}
	return req, nil
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
		require.True(t, regions.Known(v.Region))
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
		require.True(t, regions.Known(code), code)
	}
	for _, code := range []string{"", "11", "99999", "1168O", "#"} {
		require.False(t, regions.Known(code), code)
	}
}

// BenchmarkDecodeRequest: a well-formed intent through DecodeRequest (the
// fast decoder) and through encoding/json's strict decoding alone, side by
// side.
func BenchmarkDecodeRequest(b *testing.B) {
	data := []byte(`{"campaign":"test-2021","provider":"pass","identity_token":"tok-abc.def-0123456789","birthdate":"1990-08-19","phone":"010-1234-5678","region":"11680","clinic":"c-11680-01","device_id":"device-0123456789"}`)
	b.Run("intake", func(b *testing.B) {
		for b.Loop() {
			if _, err := intake.DecodeRequest(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			if _, err := strictStd(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDisallowUnknownFieldsOption: the fast decoder refuses an unknown
// field itself (it does not merely fall back), so the option read from
// go-json's Decoder still does what its name says.
func TestDisallowUnknownFieldsOption(t *testing.T) {
	known, unknown := intake.DecodeFastForTest([]byte(`{"campaign":"x"}`)), intake.DecodeFastForTest([]byte(`{"campaign":"x","shoe_size":"9"}`))
	require.True(t, known, "a known field is decoded by the fast path")
	require.False(t, unknown, "an unknown field is refused by the fast path")
}
