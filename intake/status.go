package intake

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/httpapi"
)

// StatusReader looks up what became of a submission; postgres.StatusStore
// implements it on the decisions, registrations, appointments and outbox
// tables. It returns prereg.ErrNotFound while the submission is undecided.
type StatusReader interface {
	Status(ctx context.Context, receipt string) (Decided, error)
}

// Decided is a decided submission as the status lookup needs it.
type Decided struct {
	Campaign  string
	Status    prereg.Status
	Reason    prereg.Reason
	Birthdate time.Time // claimed, checked against the lookup's birthdate
	Slot      *Slot     // scheduled, notified, delivered or cancelled
}

// Slot is an appointment's place and time.
type Slot struct {
	Clinic string
	Day    time.Time
	Band   int
}

// statusAnswer is the body of GET /v1/intents/{receipt}.
type statusAnswer struct {
	Receipt  string        `json:"receipt"`
	Campaign string        `json:"campaign,omitempty"`
	Status   prereg.Status `json:"status"`
	Reason   prereg.Reason `json:"reason,omitempty"`
	Slot     *slotAnswer   `json:"slot,omitempty"`
}

type slotAnswer struct {
	Clinic string `json:"clinic"`
	Day    string `json:"day"`
	Band   int    `json:"band"`
	Time   string `json:"time,omitempty"` // the band as people read it, e.g. 09:00-12:00
}

func (s *Service) serveStatus(w http.ResponseWriter, r *http.Request) {
	addr := ClientAddr(r, s.cfg.TrustedProxies)
	if ok, wait := s.lookups.Allow(AddrKey(addr, s.cfg.IPv6Prefix)); !ok {
		s.limited(w, "lookup", wait)
		return
	}
	receipt := r.PathValue("receipt")
	if !s.receipts.Valid(receipt) {
		// A receipt we did not issue: no query, no hint.
		httpapi.WriteError(w, httpapi.CodeNotFound, nil)
		return
	}
	birth, err := campaign.ParseDate(r.URL.Query().Get("birthdate"))
	if err != nil {
		invalid(w, FieldErrors{"birthdate": "want the birth date given at submission, as YYYY-MM-DD"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	ans := statusAnswer{Receipt: receipt, Status: prereg.StatusReceived}
	if s.cfg.Statuses == nil {
		httpapi.WriteJSON(w, http.StatusOK, ans)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	d, err := s.cfg.Statuses.Status(ctx, receipt)
	switch {
	case errors.Is(err, prereg.ErrNotFound):
		httpapi.WriteJSON(w, http.StatusOK, ans)
		return
	case err != nil:
		s.log.Warn("status lookup failed", slog.Any("err", err))
		w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
		httpapi.WriteError(w, httpapi.CodeOverloaded, nil)
		return
	case !d.Birthdate.IsZero() && !d.Birthdate.Equal(birth):
		// The wrong birth date learns nothing, not even that the receipt
		// was decided.
		httpapi.WriteError(w, httpapi.CodeNotFound, nil)
		return
	}
	ans.Campaign, ans.Status, ans.Reason = d.Campaign, d.Status, d.Reason
	if d.Slot != nil {
		sa := &slotAnswer{Clinic: d.Slot.Clinic, Day: d.Slot.Day.Format(prereg.DateLayout), Band: d.Slot.Band}
		if e, ok := s.cat.cur.Load().get(d.Campaign); ok && d.Slot.Band >= 0 && d.Slot.Band < len(e.c.Schedule.Bands) {
			sa.Time = e.c.Schedule.Bands[d.Slot.Band].Label()
		}
		ans.Slot = sa
	}
	httpapi.WriteJSON(w, http.StatusOK, ans)
}
