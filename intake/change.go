package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/httpapi"
)

// Requests records a citizen's change of preferred clinic and
// cancellation by receipt; postgres.RequestStore implements it. Both are
// recorded even while the receipt is undecided and take effect when its
// decision names the same claimed birth date.
type Requests interface {
	// Change asks for clinic as the preferred clinic: ErrUnknownClinic
	// when the campaign has no such clinic, ErrAlreadyAllocated when a
	// round already holds the person's registration (or it is cancelled).
	Change(ctx context.Context, receipt string, birth time.Time, clinic string) error
	// Cancel cancels the submission and, through it, the person's
	// registration; repeating it changes nothing.
	Cancel(ctx context.Context, receipt string, birth time.Time) error
}

// Errors of Requests that intake answers with their own status.
var (
	ErrUnknownClinic    = errors.New("clinic not in the campaign")
	ErrAlreadyAllocated = errors.New("already allocated")
	// ErrPurged: the receipt's campaign is purged. Its personal data is
	// gone, the birth date that proves a request is the owner's among
	// it, so no request is recorded: it would write a birth date back.
	ErrPurged = errors.New("campaign purged")
)

// purged answers a request on a purged campaign: 409 conflict, reason
// purged.
func purged(w http.ResponseWriter) {
	httpapi.WriteError(w, httpapi.CodeConflict, map[string]any{"reason": "purged"})
}

// maxChangeBody bounds the body of a change or a cancellation.
const maxChangeBody = 1 << 10

// changeBody is the body of PATCH /v1/intents/{receipt} and, without
// clinic, of POST /v1/intents/{receipt}/cancel.
type changeBody struct {
	Birthdate string `json:"birthdate"`
	Clinic    string `json:"clinic"`
}

// readChangeBody decodes a change or cancellation body strictly: one JSON
// object, no unknown fields, at most maxChangeBody bytes. It writes the
// 400 (or 415) and returns false when the body is not one.
func readChangeBody(w http.ResponseWriter, r *http.Request) (changeBody, bool) {
	var b changeBody
	if !jsonContent(r.Header.Get("Content-Type")) {
		httpapi.WriteError(w, httpapi.CodeUnsupportedMedia, nil)
		return b, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxChangeBody))
	if err != nil {
		invalid(w, FieldErrors{"body": "larger than 1024 bytes or unreadable"})
		return b, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		invalid(w, FieldErrors{"body": "want a JSON object with birthdate (and clinic for a change)"})
		return b, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		invalid(w, FieldErrors{"body": "want exactly one JSON object"})
		return b, false
	}
	return b, true
}

// requestGate is what a change and a cancellation share with the status
// lookup, in its order: the per-address lookup limit, the body, the
// receipt and birth date check (checkOwner: one lockout per receipt
// across lookup, change and cancel), and a store to record the request
// in. It writes the refusal and returns false when the request stops.
func (s *Service) requestGate(w http.ResponseWriter, r *http.Request, change bool) (changeBody, Decided, bool) {
	w.Header().Set("Cache-Control", "no-store")
	addr := ClientAddr(r, s.cfg.TrustedProxies)
	if ok, wait := s.lookups.Allow(AddrKey(addr, s.cfg.IPv6Prefix)); !ok {
		s.lookupLimited(w, "lookup", wait)
		return changeBody{}, Decided{}, false
	}
	b, ok := readChangeBody(w, r)
	if !ok {
		return b, Decided{}, false
	}
	switch {
	case change && b.Clinic == "":
		invalid(w, FieldErrors{"clinic": "required"})
		return b, Decided{}, false
	case change && (len(b.Clinic) > maxClinic || !identifier(b.Clinic)):
		invalid(w, FieldErrors{"clinic": "want a clinic id of at most 64 letters, digits, '.', '_' or '-'"})
		return b, Decided{}, false
	case !change && b.Clinic != "":
		invalid(w, FieldErrors{"clinic": "not taken by a cancellation"})
		return b, Decided{}, false
	}
	d, ok := s.checkOwner(r.Context(), w, r.PathValue("receipt"), b.Birthdate)
	if !ok {
		return b, d, false
	}
	if s.cfg.Requests == nil {
		s.unavailable(w)
		return b, d, false
	}
	return b, d, true
}

// serveChange is PATCH /v1/intents/{receipt}: a new preferred clinic,
// before the person's registration is in a round. It answers the status
// body (200), 409 already_allocated after, 409 conflict (reason purged)
// once the campaign is purged, 400 for a clinic the campaign lacks, and the lookup's answers for everything else.
func (s *Service) serveChange(w http.ResponseWriter, r *http.Request) {
	b, d, ok := s.requestGate(w, r, true)
	if !ok {
		return
	}
	if d.Status == prereg.StatusCancelled {
		httpapi.WriteError(w, httpapi.CodeAlreadyAllocated, nil)
		return
	}
	birth, _ := campaign.ParseDate(b.Birthdate) // checked by checkOwner
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	err := s.cfg.Requests.Change(ctx, r.PathValue("receipt"), birth, b.Clinic)
	switch {
	case errors.Is(err, ErrUnknownClinic):
		invalid(w, FieldErrors{"clinic": "not a clinic of this campaign"})
		return
	case errors.Is(err, ErrAlreadyAllocated):
		httpapi.WriteError(w, httpapi.CodeAlreadyAllocated, nil)
		return
	case errors.Is(err, ErrPurged):
		purged(w)
		return
	case err != nil:
		s.log.Warn("change: could not record", slog.Any("err", err))
		s.unavailable(w)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, statusAnswer{Receipt: r.PathValue("receipt"), Campaign: d.Campaign, Status: d.Status, Reason: d.Reason})
}

// serveCancel is POST /v1/intents/{receipt}/cancel: 200
// {"status":"cancelled"}, the same when repeated, 409 conflict (reason
// purged) once the campaign is purged, and the lookup's answers for
// everything else (a wrong birth date is the lookup's 404).
func (s *Service) serveCancel(w http.ResponseWriter, r *http.Request) {
	b, d, ok := s.requestGate(w, r, false)
	if !ok {
		return
	}
	birth, _ := campaign.ParseDate(b.Birthdate) // checked by checkOwner
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Requests.Cancel(ctx, r.PathValue("receipt"), birth); errors.Is(err, ErrPurged) {
		purged(w)
		return
	} else if err != nil {
		s.log.Warn("cancel: could not record", slog.Any("err", err))
		s.unavailable(w)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, statusAnswer{Receipt: r.PathValue("receipt"), Campaign: d.Campaign, Status: prereg.StatusCancelled})
}
