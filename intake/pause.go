package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prereg/prereg/httpapi"
)

// Pause is an operator's pause of a campaign's submissions: while it
// holds, every intake replica answers POST /v1/intents for the campaign
// 503 {"error":"paused","reopens_at":…} with Retry-After. It carries no
// personal data.
type Pause struct {
	Campaign string    `json:"campaign"`
	PausedAt time.Time `json:"paused_at"`
	// ReopensAt ends the pause by itself; nil: until an operator resumes.
	ReopensAt *time.Time `json:"reopens_at"`
	// By names who paused: role and token id, as the audit log does.
	By string `json:"paused_by"`
}

// Holds reports whether the pause still holds at now.
func (p *Pause) Holds(now time.Time) bool {
	return p != nil && (p.ReopensAt == nil || now.Before(*p.ReopensAt))
}

// Pauses lists the pauses in force by campaign; postgres.PauseStore
// implements it. Intake reads it in the background with the campaigns
// (Config.Refresh), never on a request: a pause reaches every replica
// within one refresh.
type Pauses interface {
	Pauses(ctx context.Context) (map[string]Pause, error)
}

// PauseStore records pauses: the admin side's port.
type PauseStore interface {
	Pauses
	// Pause records (or replaces) a campaign's pause; an unknown campaign
	// is prereg.ErrCampaignNotFound.
	Pause(ctx context.Context, p Pause) error
	// Resume ends a campaign's pause; false when there was none.
	Resume(ctx context.Context, campaign string) (bool, error)
}

// pausedRetry is the Retry-After of a pause without a reopening time.
const pausedRetry = time.Minute

// paused answers a submission to a paused campaign and reports true; it
// reports false, writing nothing, when the campaign takes submissions.
// It reads what the last refresh found: no I/O.
func (s *Service) paused(w http.ResponseWriter, e *entry) bool {
	if e.pause == nil {
		return false // the common case, without reading the clock
	}
	now := s.now()
	if !e.pause.Holds(now) {
		return false
	}
	wait := pausedRetry
	var reopens any
	if at := e.pause.ReopensAt; at != nil {
		wait, reopens = at.Sub(now), at.UTC()
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	httpapi.WriteError(w, httpapi.CodePaused, map[string]any{"reopens_at": reopens})
	return true
}

// NewPause is an operator's pause of a campaign's intake from now, until
// reopensAt (RFC 3339, in the future) or, when that is empty, until
// resumed.
func NewPause(campaign, reopensAt, by string, now time.Time) (Pause, error) {
	p := Pause{Campaign: campaign, PausedAt: now.UTC(), By: by}
	if reopensAt == "" {
		return p, nil
	}
	at, err := time.Parse(time.RFC3339, reopensAt)
	if err != nil || !at.After(p.PausedAt) {
		return p, errors.New("want a future RFC 3339 time")
	}
	at = at.UTC()
	p.ReopensAt = &at
	return p, nil
}

// pauseRequest is the body of POST /admin/v1/campaigns/{campaign}/pause.
type pauseRequest struct {
	// ReopensAt is when submissions reopen by themselves (RFC 3339);
	// empty: when an operator resumes.
	ReopensAt string `json:"reopens_at"`
}

// PauseHandlers are the operator's pause and resume of a campaign's
// intake on the admin API. by names the operator for the record.
func PauseHandlers(store PauseStore, by func(*http.Request) string, now func() time.Time, log *slog.Logger) (pause, resume http.Handler) {
	pause = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body pauseRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"body": "want JSON {reopens_at}"}})
			return
		}
		p, err := NewPause(r.PathValue("campaign"), body.ReopensAt, by(r), now())
		if err != nil {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"reopens_at": err.Error()}})
			return
		}
		if err := store.Pause(r.Context(), p); err != nil {
			if httpapi.Fail(w, err, nil) == httpapi.CodeInternal {
				log.Error("pause intake", slog.String("campaign", p.Campaign), slog.Any("err", err))
			}
			return
		}
		log.Info("intake paused", slog.String("campaign", p.Campaign), slog.Bool("until_resumed", p.ReopensAt == nil))
		httpapi.WriteJSON(w, http.StatusOK, p)
	})
	resume = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("campaign")
		was, err := store.Resume(r.Context(), id)
		if err != nil {
			if httpapi.Fail(w, err, nil) == httpapi.CodeInternal {
				log.Error("resume intake", slog.String("campaign", id), slog.Any("err", err))
			}
			return
		}
		log.Info("intake resumed", slog.String("campaign", id), slog.Bool("was_paused", was))
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"campaign": id, "resumed": was})
	})
	return pause, resume
}

// readPauses reads the pauses for a refresh; without a store there are
// none.
func (r *refresher) readPauses(ctx context.Context) (map[string]Pause, error) {
	if r.pauses == nil {
		return nil, nil
	}
	ps, err := r.pauses.Pauses(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh pauses: %w", err)
	}
	return ps, nil
}
