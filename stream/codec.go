package stream

import (
	"errors"
	"fmt"

	gojson "github.com/goccy/go-json"
)

// Encode and Decode are the wire format of the messages on the streams:
// intents (prereg.Intent) and outcomes (prereg.Outcome) as JSON, the same
// JSON encoding/json writes and reads. They use github.com/goccy/go-json,
// a drop-in for encoding/json that decodes an outcome about five times
// faster with fewer allocations (BenchmarkCodec): every submission is
// encoded and decoded twice on its way through the stages, and dedupe's
// workers share the CPU with PostgreSQL.
//
// These messages are written by prereg's own stages. What arrives from
// outside (intake's request bodies, provider and gateway answers) is
// still read by encoding/json, whose strictness the fuzz tests pin down.

// Encode encodes one message.
func Encode(v any) ([]byte, error) {
	return gojson.Marshal(v)
}

// ErrMalformed is the error of a message that cannot be decoded: it will
// not decode on redelivery either, so a consumer gives up on it at once.
var ErrMalformed = errors.New("malformed message")

// Decode decodes one message into v; its errors wrap ErrMalformed. A
// message that makes the decoder panic is an error like any other
// undecodable message, not a crashed worker that JetStream would deliver
// the same message to again.
func Decode(data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the decoder panicked", ErrMalformed)
		}
	}()
	if err := gojson.Unmarshal(data, v); err != nil {
		return malformed(err)
	}
	return nil
}

// malformed says where a message failed to decode, and nothing of its
// content: a decoder's error text can quote a value (a whole string that
// is not UTF-8, a number, a time), and a submitted intent holds an
// identity token. The error ends up in logs and in JetStream's
// termination reasons.
func malformed(err error) error {
	var se *gojson.SyntaxError
	var te *gojson.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%w: invalid JSON at byte %d", ErrMalformed, se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("%w: field %q at byte %d is not a %s", ErrMalformed, te.Field, te.Offset, te.Type)
	}
	return fmt.Errorf("%w: %T", ErrMalformed, err)
}
