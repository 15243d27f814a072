package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

// MaxBody is the largest intent body accepted (docs/DESIGN.md, "HTTP").
const MaxBody = 4 << 10

// Request is the body of POST /v1/intents as the citizen sends it.
type Request struct {
	Campaign      string `json:"campaign"`
	Provider      string `json:"provider"`
	IdentityToken string `json:"identity_token"`
	Birthdate     string `json:"birthdate"`
	Phone         string `json:"phone"`
	Region        string `json:"region"`
	Clinic        string `json:"clinic,omitempty"`
	Earliest      string `json:"earliest,omitempty"`
	DeviceID      string `json:"device_id"`
}

// FieldErrors maps a field name to what is wrong with it; it is the
// "fields" object of a 400 answer. Messages never repeat the value.
type FieldErrors map[string]string

func (f FieldErrors) Error() string {
	var b strings.Builder
	b.WriteString("invalid intent:")
	for k, v := range f {
		fmt.Fprintf(&b, " %s: %s;", k, v)
	}
	return b.String()
}

// DecodeRequest decodes an intent strictly: one JSON object of valid UTF-8,
// no unknown fields, every field a string, nothing after the object. Errors
// are FieldErrors, naming the field where the decoder can tell ("body"
// otherwise).
func DecodeRequest(data []byte) (Request, error) {
	var req Request
	if len(data) > MaxBody {
		return req, FieldErrors{"body": fmt.Sprintf("larger than %d bytes", MaxBody)}
	}
	if !utf8.Valid(data) {
		return req, FieldErrors{"body": "not valid UTF-8"}
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return req, FieldErrors{"body": "want a JSON object"}
	}
	if req, ok := decodeFast(data); ok {
		return req, nil
	}
	// encoding/json decides whatever the fast decoder refused, and names
	// the field at fault.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, FieldErrors{"body": "want exactly one JSON object"}
	}
	return req, nil
}

// decodeFast decodes a well-formed intent with go-json, which costs a
// third of encoding/json (intake's largest cost of its own per 202). It
// answers only for input it accepts whole (one object, known fields, only
// whitespace after it); anything else goes to encoding/json, whose answer
// is the contract. FuzzDecodeRequest holds the two to the same result on
// every input the fast path accepts.
func decodeFast(data []byte) (Request, bool) {
	var req Request
	if err := gojson.UnmarshalWithOption(data, &req, disallowUnknownFields); err != nil {
		return Request{}, false
	}
	return req, true
}

// disallowUnknownFields is go-json's Decoder.DisallowUnknownFields as an
// option of Unmarshal, which works on the bytes at hand instead of
// allocating a stream buffer per request. go-json offers the setting only
// on its Decoder, so it is read once from a Decoder set up with it;
// TestDisallowUnknownFieldsOption fails if that stops working.
var disallowUnknownFields = func() gojson.DecodeOptionFunc {
	var set gojson.DecodeOption
	dec := gojson.NewDecoder(strings.NewReader("{}"))
	dec.DisallowUnknownFields()
	var v struct{}
	_ = dec.DecodeWithOption(&v, func(o *gojson.DecodeOption) { set.Flags = o.Flags })
	return func(o *gojson.DecodeOption) { o.Flags |= set.Flags }
}()

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return FieldErrors{te.Field: "want a string"}
	case errors.As(err, &te):
		return FieldErrors{"body": "want a JSON object"}
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return FieldErrors{"body": "not valid JSON"}
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if !plainName(name) {
			name = "body"
		}
		return FieldErrors{name: "unknown field"}
	}
	return FieldErrors{"body": "not a valid intent"}
}

// plainName reports whether an unknown field's name is safe to echo: a
// short identifier, never something a client could smuggle data through.
func plainName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
