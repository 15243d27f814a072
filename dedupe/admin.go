package dedupe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// HeldSubmission is a held decision waiting for (or after) an operator's
// review. It carries pseudonymous keys only.
type HeldSubmission struct {
	Campaign   string        `json:"campaign"`
	Receipt    string        `json:"receipt"`
	Window     string        `json:"window"`
	Reason     prereg.Reason `json:"reason"`
	DeviceKey  string        `json:"device_key"`
	ReceivedAt time.Time     `json:"received_at"`
	Review     string        `json:"review,omitempty"`
	ReviewedBy string        `json:"reviewed_by,omitempty"`
	ReviewedAt *time.Time    `json:"reviewed_at,omitempty"`
}

// Reviews an operator records beside a held decision.
const (
	ReviewReleased = "released"
	ReviewRejected = "rejected"
)

// ReviewResult says what a review did.
type ReviewResult struct {
	Receipt        string `json:"receipt"`
	Review         string `json:"review"`
	RegistrationID int64  `json:"registration_id,omitempty"`
	// AlreadyRegistered is true when a release found the person registered
	// already: nobody is registered twice.
	AlreadyRegistered bool `json:"already_registered,omitempty"`
}

// ErrAlreadyReviewed is returned when a held decision was reviewed before.
var ErrAlreadyReviewed = fmt.Errorf("held decision already reviewed: %w", prereg.ErrConflict)

// AdminStore is what the admin handlers read and write.
type AdminStore interface {
	DedupeReport(ctx context.Context, campaign, window string, top int, now time.Time) (*Report, error)
	Held(ctx context.Context, campaign string, pending bool, limit int) ([]HeldSubmission, error)
	ReviewHeld(ctx context.Context, receipt, review, by string, now time.Time) (ReviewResult, error)
}

// Admin serves dedupe's admin routes. Authentication and roles are the
// caller's (httpapi.RequireRole); Reviewer names who acted.
type Admin struct {
	Store    AdminStore
	Now      func() time.Time
	Log      *slog.Logger
	Reviewer func(*http.Request) string
}

// ServeReport answers GET /admin/v1/reports/dedupe?campaign=&window=&format=.
func (a *Admin) ServeReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c := q.Get("campaign")
	if c == "" {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"campaign": "required"}})
		return
	}
	format := q.Get("format")
	if format == "" {
		format = FormatJSON
	}
	if format != FormatJSON && format != FormatCSV && format != FormatHTML && format != FormatText {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"format": "want json, csv, html or text"}})
		return
	}
	top, _ := strconv.Atoi(q.Get("top"))
	rep, err := a.Store.DedupeReport(r.Context(), c, q.Get("window"), min(max(top, 0), 1000), a.Now())
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", ContentType(format))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if format == FormatHTML {
		httpapi.SetHTMLHeaders(w.Header(), ReportPolicy)
	}
	w.Header().Set("Cache-Control", "no-store")
	if err := rep.Write(w, format); err != nil {
		a.Log.Warn("dedupe report: write", slog.Any("err", err))
	}
}

// ServeHeld answers GET /admin/v1/held?campaign=[&all=1]: the held
// decisions waiting for review (all of them, reviewed too, with all=1).
func (a *Admin) ServeHeld(w http.ResponseWriter, r *http.Request) {
	c := r.URL.Query().Get("campaign")
	if c == "" {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"campaign": "required"}})
		return
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	held, err := a.Store.Held(r.Context(), c, r.URL.Query().Get("all") == "", limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	if held == nil {
		held = []HeldSubmission{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"campaign": c, "held": held})
}

// ServeRelease answers POST /admin/v1/held/{submission}/release.
func (a *Admin) ServeRelease(w http.ResponseWriter, r *http.Request) {
	a.review(w, r, ReviewReleased)
}

// ServeReject answers POST /admin/v1/held/{submission}/reject.
func (a *Admin) ServeReject(w http.ResponseWriter, r *http.Request) {
	a.review(w, r, ReviewRejected)
}

func (a *Admin) review(w http.ResponseWriter, r *http.Request, review string) {
	receipt := r.PathValue("submission")
	if receipt == "" {
		httpapi.WriteError(w, httpapi.CodeInvalid, nil)
		return
	}
	res, err := a.Store.ReviewHeld(r.Context(), receipt, review, a.Reviewer(r), a.Now())
	if err != nil {
		a.fail(w, err)
		return
	}
	a.Log.Info("held decision reviewed", slog.String("review", review), slog.Bool("already_registered", res.AlreadyRegistered))
	httpapi.WriteJSON(w, http.StatusOK, res)
}

func (a *Admin) fail(w http.ResponseWriter, err error) {
	var extra map[string]any
	if errors.Is(err, prereg.ErrConflict) {
		extra = map[string]any{"detail": "already reviewed"}
	}
	if httpapi.Fail(w, err, extra) == httpapi.CodeInternal {
		a.Log.Error("dedupe admin", slog.Any("err", err))
	}
}
