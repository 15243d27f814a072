package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg/config"
)

// AdminRoute is one route of the admin API: its pattern (method and path,
// as http.ServeMux takes it), the action it records in the audit log when
// it changes state, the roles allowed, and its handler. Every admin route
// is declared as one, so that the access rules and the audit log cannot
// miss a route (Admin.Mount, and the table test over Admin.Routes).
type AdminRoute struct {
	Pattern string
	// Action names what a state-changing route does in the audit log,
	// e.g. "held.release"; read-only routes leave it empty.
	Action  string
	Roles   []config.Role
	Handler http.Handler
}

// Method is the route's HTTP method.
func (r AdminRoute) Method() string { m, _, _ := strings.Cut(r.Pattern, " "); return m }

// Path is the route's path pattern.
func (r AdminRoute) Path() string { _, p, _ := strings.Cut(r.Pattern, " "); return p }

// ReadOnly reports whether the route only reads (GET): the only kind an
// auditor may call.
func (r AdminRoute) ReadOnly() bool { return r.Method() == http.MethodGet }

// AuditEntry is one admin action as the audit log keeps it. It names the
// token by TokenID, never by its value, and holds no personal data.
type AuditEntry struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Role    string    `json:"role"`
	TokenID string    `json:"token_id"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	// Outcome is the answer's status (or ok / error for a command); ""
	// while under way, or when the process ended before it finished.
	Outcome string `json:"outcome"`
}

// AuditLog keeps admin actions (postgres.AuditStore). Begin writes the
// entry before the action runs and returns its id; Finish sets its
// outcome.
type AuditLog interface {
	Begin(ctx context.Context, e AuditEntry) (int64, error)
	Finish(ctx context.Context, id int64, outcome string) error
}

// Admin guards the admin API: bearer tokens with roles, and an audit
// entry for every state-changing request.
type Admin struct {
	Tokens *config.AdminTokens
	// TokenID names a token in the audit log without revealing it: a
	// short keyed hash.
	TokenID func(token string) string
	Audit   AuditLog
	Log     *slog.Logger
	Now     func() time.Time

	routes []AdminRoute
}

// Routes lists every route mounted so far, in mounting order.
func (a *Admin) Routes() []AdminRoute { return slices.Clone(a.routes) }

// Mount registers routes on mux, each behind the token check of its roles
// and, when it changes state, the audit log. A route that changes state
// and lets auditors in is a programming error: auditors only read.
func (a *Admin) Mount(mux *http.ServeMux, routes ...AdminRoute) {
	for _, rt := range routes {
		if !rt.ReadOnly() && slices.Contains(rt.Roles, config.RoleAuditor) {
			panic(fmt.Sprintf("admin route %s: auditors are read-only", rt.Pattern))
		}
		if !rt.ReadOnly() && rt.Action == "" {
			panic(fmt.Sprintf("admin route %s: a state-changing route needs an audit action", rt.Pattern))
		}
		h := rt.Handler
		if !rt.ReadOnly() {
			h = a.audited(rt, h)
		}
		mux.Handle(rt.Pattern, a.require(h, rt.Roles))
		a.routes = append(a.routes, rt)
	}
}

// maxAuditedBody bounds what the audit reads of a request body for its
// target; admin bodies are small JSON objects.
const maxAuditedBody = 64 << 10

// targetFields are the body fields that say what an action acts on. None
// of them is personal data: campaigns, windows, appointment and run ids,
// a pause's reopening time, a bulk review's verdict and count.
var targetFields = []string{"campaign", "window", "appointment", "dry_run", "policy", "reopens_at", "review", "count"}

// audited writes the audit entry before h runs (refusing the action when
// it cannot be written: no unrecorded admin action) and its outcome after.
func (a *Admin) audited(rt AdminRoute, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Audit == nil {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAuditedBody+1))
		if err != nil {
			WriteError(w, CodeInvalid, map[string]any{"detail": "unreadable body"})
			return
		}
		if len(body) > maxAuditedBody {
			WriteError(w, CodeTooLarge, nil)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		now := time.Now
		if a.Now != nil {
			now = a.Now
		}
		entry := AuditEntry{
			At:      now().UTC(),
			Role:    string(RoleFrom(r.Context())),
			TokenID: TokenIDFrom(r.Context()),
			Action:  rt.Action,
			Target:  auditTarget(rt, r, body),
		}
		id, err := a.Audit.Begin(r.Context(), entry)
		if err != nil {
			a.log().Error("admin audit: record", slog.String("action", rt.Action), slog.Any("err", err))
			WriteError(w, CodeOverloaded, map[string]any{"detail": "the audit log is unavailable; nothing was done"})
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		// The answer is sent: its request's context may be cancelled
		// already, the outcome is still worth writing.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := a.Audit.Finish(ctx, id, strconv.Itoa(sw.status)); err != nil {
			a.log().Warn("admin audit: outcome", slog.Int64("audit_id", id), slog.Any("err", err))
		}
	})
}

func (a *Admin) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// auditTarget is what an action acts on: the route's path values, then
// the body's target fields, as "name=value" pairs; values are bounded.
func auditTarget(rt AdminRoute, r *http.Request, body []byte) string {
	var parts []string
	for _, seg := range strings.Split(rt.Path(), "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")
			parts = append(parts, name+"="+bounded(r.PathValue(name)))
		}
	}
	var fields map[string]any
	if json.Unmarshal(body, &fields) == nil {
		for _, k := range targetFields {
			if v, ok := fields[k]; ok {
				parts = append(parts, k+"="+bounded(fmt.Sprint(v)))
			}
		}
	}
	return strings.Join(parts, " ")
}

// bounded cuts a value that goes into the audit log to a sane length and
// to printable ASCII.
func bounded(v string) string {
	b := []byte(v[:min(len(v), 80)])
	for i, c := range b {
		if c < 0x21 || c > 0x7e {
			b[i] = '_'
		}
	}
	return string(b)
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
