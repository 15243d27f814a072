// Package httpapi holds what every stage's HTTP handlers share: JSON
// answers, the one table that maps error codes to statuses, and the bearer
// token check of the admin API. Stages own their handlers; this package
// owns none.
package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/config"
)

// Error codes of the outside contract (docs/DESIGN.md, "HTTP") and their
// statuses, in one place.
const (
	CodeInvalid              = "invalid"
	CodeWindowClosed         = "window_closed"
	CodeNotFound             = "not_found"
	CodeTooLarge             = "too_large"
	CodeUnsupportedMedia     = "unsupported_media_type"
	CodeRateLimited          = "rate_limited"
	CodeOverloaded           = "overloaded"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeConflict             = "conflict"
	CodeInternal             = "internal"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeHeadersTooLarge      = "headers_too_large"
	// CodePaused: an operator paused the campaign's intake; the answer
	// says when it reopens.
	CodePaused           = "paused"
	CodeAlreadyAllocated = "already_allocated"
)

var statuses = map[string]int{
	CodeInvalid:              http.StatusBadRequest,
	CodeWindowClosed:         http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeTooLarge:             http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:     http.StatusUnsupportedMediaType,
	CodeRateLimited:          http.StatusTooManyRequests,
	CodeOverloaded:           http.StatusServiceUnavailable,
	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeConflict:             http.StatusConflict,
	CodeInternal:             http.StatusInternalServerError,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodeHeadersTooLarge:      http.StatusRequestHeaderFieldsTooLarge,
	CodePaused:               http.StatusServiceUnavailable,
	CodeAlreadyAllocated:     http.StatusConflict,
}

// Status is the HTTP status of an error code.
func Status(code string) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// domainErrors maps the domain's sentinel errors to their error codes; the
// first match in the chain of an error wins.
var domainErrors = []struct {
	err  error
	code string
}{
	{prereg.ErrCampaignNotFound, CodeNotFound},
	{prereg.ErrNotFound, CodeNotFound},
	{prereg.ErrConflict, CodeConflict},
}

// ErrorCode is the error code of a domain error: the code of the first
// sentinel of the prereg package that err matches, CodeInternal for
// anything else (nil included).
func ErrorCode(err error) string {
	if err == nil {
		return CodeInternal
	}
	for _, d := range domainErrors {
		if errors.Is(err, d.err) {
			return d.code
		}
	}
	return CodeInternal
}

// ErrorStatusCode is the HTTP status of a domain error (see ErrorCode).
func ErrorStatusCode(err error) int { return Status(ErrorCode(err)) }

// Fail answers a domain error: {"error": ErrorCode(err), ...extra} with
// its status. It returns the code, so that the handler can log what was
// internal (the error itself never reaches the answer).
func Fail(w http.ResponseWriter, err error, extra map[string]any) string {
	code := ErrorCode(err)
	WriteError(w, code, extra)
	return code
}

// WriteJSON writes v as JSON with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes {"error": code, ...extra} with the code's status.
func WriteError(w http.ResponseWriter, code string, extra map[string]any) {
	body := map[string]any{"error": code}
	for k, v := range extra {
		body[k] = v
	}
	WriteJSON(w, Status(code), body)
}

// RequireRole wraps an admin handler: 401 without a valid bearer token,
// 403 when its role is not among roles. The handler finds the role with
// RoleFrom and the token's id with TokenIDFrom (its label, see
// config.AdminTokens.Lookup). Admin.Mount does the same with the audit
// log's keyed token ids.
func RequireRole(tokens *config.AdminTokens, h http.Handler, roles ...config.Role) http.Handler {
	return (&Admin{Tokens: tokens}).require(h, roles)
}

func (a *Admin) require(h http.Handler, roles []config.Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || a.Tokens == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="prereg-admin"`)
			WriteError(w, CodeUnauthorized, nil)
			return
		}
		token = strings.TrimSpace(token)
		role, label, ok := a.Tokens.Lookup(token)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="prereg-admin", error="invalid_token"`)
			WriteError(w, CodeUnauthorized, nil)
			return
		}
		if !slices.Contains(roles, role) {
			WriteError(w, CodeForbidden, map[string]any{"role": role})
			return
		}
		id := label
		if a.TokenID != nil {
			id = a.TokenID(token)
		}
		h.ServeHTTP(w, r.WithContext(withRole(r.Context(), role, id)))
	})
}

// StyleHash is the Content-Security-Policy source that allows one inline
// <style> block: 'sha256-…' of its exact text.
func StyleHash(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// HTMLPolicy is the strict Content-Security-Policy of prereg's HTML
// answers: everything from this origin only, scripts only from files (no
// inline script, no eval), inline styles only those whose hashes are
// given, no plugins, no framing, no <base> rewriting, forms posting only
// here. A page that injected markup could run nothing and send nothing
// elsewhere.
func HTMLPolicy(styleHashes ...string) string {
	style := "'self'"
	if len(styleHashes) > 0 {
		style += " " + strings.Join(styleHashes, " ")
	}
	return "default-src 'self'; script-src 'self'; style-src " + style +
		"; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// SetHTMLHeaders sets what every HTML answer carries: its type, the
// policy (HTMLPolicy), nosniff so that no other answer is ever run as
// HTML or script, and no referrer, so that a receipt in a URL never
// leaves the page.
func SetHTMLHeaders(h http.Header, policy string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", policy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
