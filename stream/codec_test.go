package stream_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/stream"
)

func sampleOutcome() prereg.Outcome {
	const key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	seoul := time.FixedZone("KST", 9*3600)
	return prereg.Outcome{
		Receipt: "r_0123456789abcdef0123456789abcdef", Campaign: "covid-2021 \"fall\" 접종", Window: "w3", Provider: "pass",
		Verdict: prereg.VerdictVerified, Reason: prereg.ReasonOtherDevice, IdentityKey: key, TokenKey: key,
		Birthdate: "1960-02-29", ClaimedBirthdate: "1960-02-29",
		Phone:  prereg.Sealed{KeyID: "k1", Data: []byte{0, 1, 2, 0xff, '"', '\\'}},
		Region: "11110", Clinic: "c-<1>&", PhoneVerified: true, DeviceKey: key, AddrKey: key,
		ReceivedAt: time.Date(2021, 8, 9, 20, 0, 0, 123456789, seoul), DecidedAt: time.Date(2021, 8, 9, 11, 0, 1, 0, time.UTC),
	}
}

// The codec writes what encoding/json writes and reads it back the same
// way, so that stages built before and after the switch agree.
func TestCodecMatchesEncodingJSON(t *testing.T) {
	for name, v := range map[string]any{
		"outcome": sampleOutcome(),
		"empty":   prereg.Outcome{},
		"intent": prereg.Intent{Receipt: "r_1", Campaign: "c", Window: "w", Provider: "p", IdentityToken: "tok\u2028en",
			Birthdate: "2000-01-01", Phone: prereg.Sealed{KeyID: "k", Data: []byte("x")}, Region: "r", DeviceKey: "d",
			ReceivedAt: time.Unix(1628500000, 5).UTC()},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := stream.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(v)
			// Both must decode to the same value from either encoding.
			for _, data := range [][]byte{got, want} {
				p := reflect.New(reflect.TypeOf(v))
				if err := stream.Decode(data, p.Interface()); err != nil {
					t.Fatalf("decode %s: %v", data, err)
				}
				q := reflect.New(reflect.TypeOf(v))
				if err := json.Unmarshal(data, q.Interface()); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(p.Elem().Interface(), q.Elem().Interface()) {
					t.Errorf("decoded %s:\n got %+v\nwant %+v", data, p.Elem().Interface(), q.Elem().Interface())
				}
			}
		})
	}
}

func TestDecodeRefusesMalformed(t *testing.T) {
	for _, data := range []string{``, `{`, `{"receipt": 1}`, `{"received_at": "yesterday"}`, `[]`, `{"phone": {"data": "!!"}}`, `{} {}`} {
		var o prereg.Outcome
		if err := stream.Decode([]byte(data), &o); !errors.Is(err, stream.ErrMalformed) {
			t.Errorf("Decode(%q) = %v, want ErrMalformed", data, err)
		}
	}
}

// A decoding error says where, never what: messages hold identity tokens.
func TestDecodeErrorsHoldNoContent(t *testing.T) {
	const secret = "tok-SECRET-1234"
	for _, data := range []string{
		`{"identity_token": "` + secret + "\xff\xfe" + `"}`,
		"{\"identity_token\": \"" + secret + "\xff\"}",
		`{"identity_token": 1234, "receipt": "` + secret + `"}`,
		`{"received_at": "` + secret + `"}`,
		`{"receipt": "` + secret + `" "x"}`,
		`{"phone": {"data": "` + secret + `"}}`,
	} {
		var in prereg.Intent
		err := stream.Decode([]byte(data), &in)
		if err == nil {
			continue // some decode: fine, as long as errors say nothing
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "1234") {
			t.Errorf("error quotes the message: %v", err)
		}
	}
}

// BenchmarkCodec decodes and encodes an outcome with encoding/json and
// with the streams' codec, side by side.
func BenchmarkCodec(b *testing.B) {
	data, _ := json.Marshal(sampleOutcome())
	o := sampleOutcome()
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"decode/encoding_json", func() error { var o prereg.Outcome; return json.Unmarshal(data, &o) }},
		{"decode/stream", func() error { var o prereg.Outcome; return stream.Decode(data, &o) }},
		{"encode/encoding_json", func() error { _, err := json.Marshal(o); return err }},
		{"encode/stream", func() error { _, err := stream.Encode(o); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
