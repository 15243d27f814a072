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
	// Window is the window the submission was decided in ("" unknown):
	// the lookup's "next" round.
	Window string
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
	// Next is what happens next (next.go): the round and the expected
	// SMS before allocation, the appointment after.
	Next any `json:"next,omitempty"`
}

type slotAnswer struct {
	Clinic string `json:"clinic"`
	Day    string `json:"day"`
	Band   int    `json:"band"`
	Time   string `json:"time,omitempty"` // the band as people read it, e.g. 09:00-12:00
}

func (s *Service) serveStatus(w http.ResponseWriter, r *http.Request) {
	// Every answer of the lookup, refusals included, carries the same
	// headers, so that none of them tells one refusal from another.
	w.Header().Set("Cache-Control", "no-store")
	addr := ClientAddr(r, s.cfg.TrustedProxies)
	if ok, wait := s.lookups.Allow(AddrKey(addr, s.cfg.IPv6Prefix)); !ok {
		s.lookupLimited(w, "lookup", wait)
		return
	}
	receipt := r.PathValue("receipt")
	d, ok := s.checkOwner(r.Context(), w, receipt, r.URL.Query().Get("birthdate"))
	if !ok {
		return
	}
	ans := statusAnswer{Receipt: receipt, Campaign: d.Campaign, Status: d.Status, Reason: d.Reason}
	if d.Slot != nil {
		sa := &slotAnswer{Clinic: d.Slot.Clinic, Day: d.Slot.Day.Format(prereg.DateLayout), Band: d.Slot.Band}
		if e, ok := s.cat.cur.Load().get(d.Campaign); ok && d.Slot.Band >= 0 && d.Slot.Band < len(e.c.Schedule.Bands) {
			sa.Time = e.c.Schedule.Bands[d.Slot.Band].Label()
		}
		ans.Slot = sa
	}
	if e, ok := s.cat.cur.Load().get(d.Campaign); ok {
		ans.Next = lookupNext(e, &d, s.now())
	}
	httpapi.WriteJSON(w, http.StatusOK, ans)
}

// checkOwner is intake's "receipt + birth date" check, which every route
// that shows or changes a submission by its receipt goes through: it
// returns the submission when birthdate (YYYY-MM-DD) is the one it was
// made with, or Status received while it is undecided (there is no
// birth date to compare yet, and "received" says nothing of it).
// Otherwise it writes the refusal and returns false:
//
//   - 400 for a malformed birth date, whatever the receipt;
//   - 404 not_found for a receipt this system did not issue, answered
//     without any I/O, and the same 404 (status, body, headers) for a
//     wrong birth date;
//   - 429 rate_limited with Retry-After while the receipt is locked, for
//     the right and the wrong birth date alike, answered before the
//     decision is read: a receipt locks after Config.LookupMaxFailures
//     wrong birth dates, on every replica (lockout.go);
//   - 503 overloaded when the decisions or the lockout cannot be read:
//     never an answer that skips the count.
func (s *Service) checkOwner(ctx context.Context, w http.ResponseWriter, receipt, birthdate string) (Decided, bool) {
	birth, err := campaign.ParseDate(birthdate)
	if err != nil {
		invalid(w, FieldErrors{"birthdate": "want the birth date given at submission, as YYYY-MM-DD"})
		return Decided{}, false
	}
	if !s.receipts.Valid(receipt) {
		notFound(w)
		return Decided{}, false
	}
	received := Decided{Status: prereg.StatusReceived}
	if s.cfg.Statuses == nil {
		return received, true
	}
	a, wait, err := s.lockout.reserve(ctx, receipt)
	switch {
	case err != nil:
		s.log.Warn("status lookup: lockout unavailable", slog.Any("err", err))
		s.unavailable(w)
		return Decided{}, false
	case wait > 0:
		s.lookupLimited(w, "receipt", wait)
		return Decided{}, false
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d, err := s.cfg.Statuses.Status(qctx, receipt)
	switch {
	case errors.Is(err, prereg.ErrNotFound):
		s.refund(ctx, a)
		return received, true
	case err != nil:
		s.refund(ctx, a)
		s.log.Warn("status lookup failed", slog.Any("err", err))
		s.unavailable(w)
		return Decided{}, false
	case !d.Birthdate.IsZero() && !d.Birthdate.Equal(birth):
		// The attempt stays counted; the answer is the forged receipt's.
		notFound(w)
		return Decided{}, false
	}
	s.refund(ctx, a)
	return d, true
}

// refund hands back an attempt that was not a wrong birth date. When it
// cannot, the attempt stays counted against the receipt, which errs on
// the side of its owner's privacy.
func (s *Service) refund(ctx context.Context, a attempt) {
	if err := s.lockout.refund(context.WithoutCancel(ctx), a); err != nil {
		s.log.Warn("status lookup: could not hand back a lookup attempt", slog.Any("err", err))
	}
}

// notFoundBody is the 404 of the lookup, the same bytes for a receipt
// this system did not issue and for a wrong birth date.
var notFoundBody = []byte(`{"error":"` + httpapi.CodeNotFound + `"}` + "\n")

func notFound(w http.ResponseWriter) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(notFoundBody)
}

// lookupLimitedBody is the 429 of the lookup, the same bytes for the
// per-address limit and a locked receipt: a client cannot tell which.
var lookupLimitedBody = []byte(`{"error":"` + httpapi.CodeRateLimited + `","limit":"lookup"}` + "\n")

// lookupLimited answers 429; limit labels the metric only.
func (s *Service) lookupLimited(w http.ResponseWriter, limit string, wait time.Duration) {
	s.m.rateLimited.WithLabelValues(limit).Inc()
	h := w.Header()
	h.Set("Retry-After", retryAfter(wait))
	h["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(lookupLimitedBody)
}

// unavailable answers 503 overloaded with Retry-After.
func (s *Service) unavailable(w http.ResponseWriter) {
	h := w.Header()
	h["Retry-After"] = s.retryAfter
	h["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(overloadedBody)
}
