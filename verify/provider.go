package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// providerAnswer is a provider's 200 answer. PersonID is the national
// identifier (CI): it is hashed at once and never kept.
type providerAnswer struct {
	PersonID  string `json:"person_id"`
	Birthdate string `json:"birthdate"`
	Phone     string `json:"phone"`
	// What a token from the provider's sign-in page is bound to
	// (binding.go); empty for a token bound to nothing.
	Campaign string    `json:"campaign,omitempty"`
	Device   string    `json:"device,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
}

// errInvalidToken is the provider's 422 invalid_token: a business answer,
// a success for the breaker.
var errInvalidToken = errors.New("provider: invalid token")

// providerError is a provider failure: a 5xx, 408 or 429, a timeout, a
// transport error or an unreadable 200. It counts against the breaker.
type providerError struct {
	status int // 0 for transport errors
	err    error
}

func (e *providerError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("provider answered %d", e.status)
	}
	return "provider: " + e.err.Error()
}

func (e *providerError) Unwrap() error { return e.err }

// refusedError is a 4xx other than invalid_token: the provider works but
// will not take this request. It is the message's fault, not the
// provider's.
type refusedError struct{ status int }

func (e *refusedError) Error() string {
	return fmt.Sprintf("provider refused the request: %d", e.status)
}

// providerClient speaks the provider protocol of sim/idp.go.
type providerClient struct {
	url     string
	timeout time.Duration
	http    *http.Client
}

func newProviderClient(url string, timeout time.Duration, conns int) *providerClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Keep one idle connection per worker: the default of 2 per host would
	// make a pool of 64 open and close connections all the time.
	tr.MaxIdleConnsPerHost = conns
	tr.MaxConnsPerHost = conns
	tr.IdleConnTimeout = 90 * time.Second
	return &providerClient{url: strings.TrimRight(url, "/"), timeout: timeout, http: &http.Client{Transport: tr}}
}

// verify exchanges a token. The deadline covers the whole exchange,
// body included, so a slow-drip body cannot hold a worker past Timeout.
func (c *providerClient) verify(ctx context.Context, token string) (providerAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, err := json.Marshal(map[string]string{"token": token})
	if err != nil {
		return providerAnswer{}, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/verify", bytes.NewReader(body))
	if err != nil {
		return providerAnswer{}, &refusedError{status: 0}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return providerAnswer{}, &providerError{err: scrub(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return providerAnswer{}, &providerError{err: fmt.Errorf("read answer: %w", scrub(err))}
	}
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
		var a providerAnswer
		if err := json.Unmarshal(data, &a); err != nil || a.PersonID == "" || a.Birthdate == "" {
			return providerAnswer{}, &providerError{status: 0, err: errors.New("unreadable answer")}
		}
		return a, nil
	case s == http.StatusUnprocessableEntity && bytes.Contains(data, []byte(`"invalid_token"`)):
		return providerAnswer{}, errInvalidToken
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return providerAnswer{}, &providerError{status: s}
	default:
		return providerAnswer{}, &refusedError{status: s}
	}
}

// scrub keeps the kind of a transport error without anything the request
// carried. url.Error holds only method and URL (no body, so no token), but
// a timeout is worth naming as such.
func scrub(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timeout: %w", context.DeadlineExceeded)
	}
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	return err
}
