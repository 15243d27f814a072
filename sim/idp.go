package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// IdP is the simulated identity provider. It keeps no state per person: a
// token is a MAC over (person, birth date, phone, device, nonce) under the
// provider's secret, so any number of IdP processes with the same secret
// agree, and a forged or altered token fails the MAC.
//
// Protocol (what verify speaks to every provider):
//
//	POST /v1/verify {"token":"…"}
//	200 {"person_id":"…","birthdate":"YYYY-MM-DD","phone":"+8210…"}
//	    plus, for a token from the sign-in page (idp_login.go),
//	    "campaign", "device" and "expires" (RFC 3339): what it is bound to
//	422 {"error":"invalid_token"}   a business rejection, not a failure
//	5xx                             a provider failure
//
// Faults (idp_faults.go) make it slow, failing or down on demand; GET and
// PUT /v1/faults read and change them while it serves.
type IdP struct {
	Name string
	// Now is the provider's clock, for outage schedules; time.Now when nil.
	Now func() time.Time
	// People are whom the sign-in page offers; DemoLoginPeople when nil.
	People []LoginPerson
	secret []byte // the provider's own: signs its tokens
	ci     []byte // shared by every provider: the same person has the same CI everywhere
	calls  atomic.Int64
	faults atomic.Pointer[faultState]
	// what the answers were, for tests and /v1/stats
	ok, invalid, failed, timedOut atomic.Int64
}

// TokenClaims is what a token asserts about its holder.
type TokenClaims struct {
	Person    string `json:"p"` // the provider's own person id
	Birthdate string `json:"b"`
	Phone     string `json:"ph"` // E.164, the phone registered with the provider
	Device    string `json:"d"`
	Nonce     int    `json:"n"`
	// Campaign and Expires bind a token issued through the sign-in page
	// (GET /login) to the campaign the citizen signs in for and to a short
	// life; a token without them (an app's, pasted by an API client) is
	// bound to neither.
	Campaign string    `json:"c,omitempty"`
	Expires  time.Time `json:"x,omitzero"`
}

// NewIdP returns a provider with its token secret and the national CI
// secret. Like Korea's CI (연계정보), a person's identifier is the same
// whichever provider verified them, so dedupe can match a person across
// providers; give every simulated provider the same ciSecret.
func NewIdP(name string, secret, ciSecret []byte) *IdP {
	return &IdP{Name: name, secret: append([]byte(nil), secret...), ci: append([]byte(nil), ciSecret...)}
}

// Issue makes a token for the claims, as the provider's app would after a
// person authenticated on a device.
func (p *IdP) Issue(c TokenClaims) string {
	payload, _ := json.Marshal(c)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(p.mac(payload))
}

// ErrInvalidToken is a token that fails the MAC or cannot be read.
var ErrInvalidToken = errors.New("invalid token")

// Verify checks a token and returns its claims, with Person replaced by the
// provider's stable person identifier (the "CI").
func (p *IdP) Verify(token string) (TokenClaims, error) {
	enc := base64.RawURLEncoding
	a, b, ok := strings.Cut(token, ".")
	if !ok {
		return TokenClaims{}, ErrInvalidToken
	}
	payload, err1 := enc.DecodeString(a)
	sig, err2 := enc.DecodeString(b)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, p.mac(payload)) {
		return TokenClaims{}, ErrInvalidToken
	}
	var c TokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return TokenClaims{}, ErrInvalidToken
	}
	c.Person = p.PersonID(c.Person)
	return c, nil
}

// PersonID is the identifier the provider reveals for a person: stable,
// opaque, and the same whatever device or token was used (Korea's CI).
func (p *IdP) PersonID(person string) string {
	m := hmac.New(sha256.New, p.ci)
	m.Write([]byte("ci\x00" + person))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *IdP) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, p.secret)
	m.Write([]byte("token\x00"))
	m.Write(payload)
	return m.Sum(nil)[:16]
}

// Calls is the number of verify requests answered (any outcome).
func (p *IdP) Calls() int64 { return p.calls.Load() }

// VerifyResponse is the body of a 200 from /v1/verify.
type VerifyResponse struct {
	PersonID  string `json:"person_id"`
	Birthdate string `json:"birthdate"`
	Phone     string `json:"phone"`
	// A token from the sign-in page names what it is bound to: verify
	// refuses it for another campaign or device, or once expired.
	Campaign string    `json:"campaign,omitempty"`
	Device   string    `json:"device,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
}

// Handler serves the provider's HTTP API.
func (p *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/verify", p.serveVerify)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Stats())
	})
	mux.HandleFunc("GET /v1/faults", p.serveFaults)
	mux.HandleFunc("PUT /v1/faults", p.serveFaults)
	mux.HandleFunc("GET /login", p.serveLogin)
	mux.HandleFunc("POST /login", p.serveLogin)
	return mux
}

// IdPStats counts the provider's answers by kind.
type IdPStats struct {
	Calls    int64 `json:"calls"`
	OK       int64 `json:"ok"`
	Invalid  int64 `json:"invalid"`
	Failed   int64 `json:"failed"`    // injected errors and outages
	TimedOut int64 `json:"timed_out"` // requests held until the client gave up
}

// Stats counts the answers so far.
func (p *IdP) Stats() IdPStats {
	return IdPStats{Calls: p.calls.Load(), OK: p.ok.Load(), Invalid: p.invalid.Load(), Failed: p.failed.Load(), TimedOut: p.timedOut.Load()}
}

func (p *IdP) serveVerify(w http.ResponseWriter, r *http.Request) {
	p.calls.Add(1)
	// Read the whole body first: only then does net/http notice a client
	// that hangs up, which a held (timeout) request relies on to end.
	var req struct {
		Token string `json:"token"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	err := json.NewDecoder(r.Body).Decode(&req)
	_, _ = io.Copy(io.Discard, r.Body)
	fault, alive := p.apply(r)
	if !alive {
		return
	}
	switch fault {
	case injectOutage:
		p.failed.Add(1)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "unavailable"})
		return
	case injectError:
		p.failed.Add(1)
		writeJSON(w, cmpStatus(p.Faults().ErrorStatus), map[string]any{"error": "injected"})
		return
	case injectTimeout:
		p.timedOut.Add(1)
		hang(r)
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request"})
		return
	}
	c, err := p.Verify(req.Token)
	if err != nil {
		p.invalid.Add(1)
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "invalid_token"})
		return
	}
	p.ok.Add(1)
	resp := VerifyResponse{PersonID: c.Person, Birthdate: c.Birthdate, Phone: c.Phone}
	if c.Campaign != "" {
		resp.Campaign, resp.Device, resp.Expires = c.Campaign, c.Device, c.Expires
	}
	if pause, ok := p.drips(); ok {
		writeDrip(w, r, http.StatusOK, resp, pause)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func cmpStatus(s int) int {
	if s == 0 {
		return http.StatusServiceUnavailable
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
