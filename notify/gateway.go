package notify

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Outgoing is one message handed to the gateway.
type Outgoing struct {
	To   string // the phone, in the clear only for this call
	Body string
	Type Type
	Key  string // idempotency key: prereg.OutboxKey of the row
}

// Accepted is the gateway's answer to a send it took.
type Accepted struct {
	MessageID string `json:"message_id"`
	// Duplicate is true when the gateway recognised the idempotency key
	// and answered with the message it had already taken.
	Duplicate bool `json:"duplicate"`
}

// SendError is a send the gateway refused or that failed on the way.
type SendError struct {
	Status     int    // HTTP status; 0 when no answer came
	Code       string // the gateway's error code, e.g. "invalid_number"
	Permanent  bool   // retrying cannot help (an invalid number, a text too long)
	RetryAfter time.Duration
	Err        error // the transport error, when there was one
}

func (e *SendError) Error() string {
	switch {
	case e.Err != nil:
		return "gateway: " + e.Err.Error()
	case e.Code != "":
		return fmt.Sprintf("gateway: %d %s", e.Status, e.Code)
	default:
		return fmt.Sprintf("gateway: status %d", e.Status)
	}
}

func (e *SendError) Unwrap() error { return e.Err }

// ErrBreakerOpen is returned without calling the gateway while the breaker
// is open (or half-open and already probing).
var ErrBreakerOpen = errors.New("gateway: circuit breaker open")

// IsPermanent reports whether err is a send that must not be retried.
func IsPermanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent
}

// GatewayConfig configures the HTTP client of the SMS gateway.
type GatewayConfig struct {
	URL     string // base URL; messages go to URL + "/v1/messages"
	Timeout time.Duration
	// Client is the HTTP client; one with Timeout and enough idle
	// connections per host for the worker's concurrency when nil.
	Client *http.Client
	// TripAfter consecutive failures (5xx, timeouts, refused connections)
	// open the breaker; BreakerTimeout later it lets one probe through.
	TripAfter      uint32
	BreakerTimeout time.Duration
	// OnStateChange is told of every breaker transition.
	OnStateChange func(from, to gobreaker.State)
}

// Gateway is the client of the SMS gateway's HTTP API:
//
//	POST /v1/messages  Idempotency-Key: KEY  {"to":"…","text":"…","type":"sms|lms"}
//	202 {"message_id":"…"}                    taken
//	200 {"message_id":"…","duplicate":true}   the key was seen: the first message's id
//	400 {"error":"invalid_number"|"too_long"} permanent
//	429 Retry-After                           the account's rate limit
//	5xx                                       a gateway failure
type Gateway struct {
	url     string
	client  *http.Client
	breaker *gobreaker.CircuitBreaker[Accepted]
}

// NewGateway returns a gateway client.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.URL == "" {
		return nil, errors.New("notify: gateway URL is required")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	cfg.TripAfter = cmp.Or(cfg.TripAfter, 5)
	cfg.BreakerTimeout = cmp.Or(cfg.BreakerTimeout, 10*time.Second)
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		tr.MaxIdleConns = 256
		client = &http.Client{Timeout: cfg.Timeout, Transport: tr}
	}
	g := &Gateway{url: strings.TrimRight(cfg.URL, "/") + "/v1/messages", client: client}
	trip := cfg.TripAfter
	g.breaker = gobreaker.NewCircuitBreaker[Accepted](gobreaker.Settings{
		Name:        "sms-gateway",
		MaxRequests: 1,
		Timeout:     cfg.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trip },
		// A refusal is the gateway working: only failures of the gateway
		// itself count against it.
		IsSuccessful: func(err error) bool {
			var se *SendError
			return err == nil || (errors.As(err, &se) && se.Err == nil && se.Status < 500)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if cfg.OnStateChange != nil {
				cfg.OnStateChange(from, to)
			}
		},
	})
	return g, nil
}

// State is the breaker's state: closed, half-open or open.
func (g *Gateway) State() gobreaker.State { return g.breaker.State() }

// Open reports whether the breaker is open: sends fail at once.
func (g *Gateway) Open() bool { return g.breaker.State() == gobreaker.StateOpen }

// Send hands one message to the gateway through the breaker.
func (g *Gateway) Send(ctx context.Context, m Outgoing) (Accepted, error) {
	a, err := g.breaker.Execute(func() (Accepted, error) { return g.post(ctx, m) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return Accepted{}, fmt.Errorf("%w: %w", ErrBreakerOpen, err)
	}
	return a, err
}

type sendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
	Type Type   `json:"type"`
}

func (g *Gateway) post(ctx context.Context, m Outgoing) (Accepted, error) {
	body, err := json.Marshal(sendRequest{To: m.To, Text: m.Body, Type: m.Type})
	if err != nil {
		return Accepted{}, fmt.Errorf("gateway: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(body))
	if err != nil {
		return Accepted{}, fmt.Errorf("gateway: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", m.Key)
	resp, err := g.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Accepted{}, ctx.Err()
		}
		// Never wrap the url.Error: its text carries nothing personal, but
		// keep only the cause to be sure of it.
		return Accepted{}, &SendError{Err: cmp.Or(errors.Unwrap(err), err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Accepted{}, &SendError{Status: resp.StatusCode, Err: err}
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusCreated {
		var a Accepted
		if err := json.Unmarshal(data, &a); err != nil || !safeMessageID(a.MessageID) {
			return Accepted{}, &SendError{Status: resp.StatusCode, Code: "bad_answer"}
		}
		return a, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(data, &e)
	se := &SendError{Status: resp.StatusCode, Code: SanitizeCode(e.Error)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			se.RetryAfter = time.Duration(s) * time.Second
		}
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout:
		se.Permanent = true
	}
	return Accepted{}, se
}

// maxCodeLen bounds a gateway's error code and message id: long enough
// for any code a gateway documents, too short to carry a message body.
const maxCodeLen = 64

// SanitizeCode makes a gateway's error code safe for logs and the
// outbox's last_error: the gateway is outside prereg and may echo what it
// was sent. Only ASCII letters, digits and "_.-" are kept (anything else
// becomes "_"); a code with five digits or more (a phone number, whole or
// split by separators) has every digit replaced by "#"; the result is at
// most maxCodeLen bytes.
func SanitizeCode(code string) string {
	code = code[:min(len(code), maxCodeLen)]
	digits := 0
	for _, c := range []byte(code) {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	hideDigits := digits >= 5
	b := []byte(code)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if hideDigits {
				b[i] = '#'
			}
		case !safeByte(c):
			b[i] = '_'
		}
	}
	return string(b)
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// safeMessageID reports whether a gateway's message id may be stored and
// logged as it is: bounded, of the safe characters only.
func safeMessageID(id string) bool {
	if id == "" || len(id) > maxCodeLen {
		return false
	}
	for _, c := range []byte(id) {
		if !safeByte(c) {
			return false
		}
	}
	return true
}
