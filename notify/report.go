package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// SignatureHeader carries the gateway's signature of a delivery report:
// "t=UNIX,v1=HEX" where HEX is HMAC-SHA-256(secret, "UNIX." + body).
// Signing the timestamp with the body lets the receiver refuse replays of
// old reports.
const SignatureHeader = "X-Sms-Signature"

// MaxReportAge is how far a report's signed timestamp may be from now.
const MaxReportAge = 5 * time.Minute

// Errors of report authentication.
var (
	ErrBadSignature   = errors.New("notify: bad report signature")
	ErrStaleSignature = errors.New("notify: report signature too old or from the future")
)

// Sign computes the signature header value for a report body at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ParseSignature splits a signature header into its timestamp and MAC.
func ParseSignature(h string) (time.Time, []byte, error) {
	var ts string
	var sig []byte
	for part := range strings.SplitSeq(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return time.Time{}, nil, ErrBadSignature
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return time.Time{}, nil, ErrBadSignature
			}
			sig = b
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == nil || sec <= 0 {
		return time.Time{}, nil, ErrBadSignature
	}
	return time.Unix(sec, 0), sig, nil
}

// Verify checks a report's signature header against its body at now.
func Verify(secret, body []byte, header string, now time.Time) error {
	t, sig, err := ParseSignature(header)
	if err != nil {
		return err
	}
	if !hmac.Equal(sig, mac(secret, strconv.FormatInt(t.Unix(), 10), body)) {
		return ErrBadSignature
	}
	if d := now.Sub(t); d > MaxReportAge || d < -MaxReportAge {
		return ErrStaleSignature
	}
	return nil
}

// Report is a delivery report as the gateway posts it.
type Report struct {
	MessageID string    `json:"message_id"`
	Key       string    `json:"idempotency_key"`
	Status    string    `json:"status"` // delivered or failed
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at"`
}

// Report statuses.
const (
	ReportDelivered = "delivered"
	ReportFailed    = "failed"
)

// Reports records delivery reports.
type Reports interface {
	// RecordReports stores each report once and moves its message to
	// delivered (or failed), all in one transaction, and says for each
	// what it did. A report seen before changes nothing; of two reports
	// for one message, the earlier in rs moves it. rs holds no two
	// reports with the same key, message id and status.
	RecordReports(ctx context.Context, rs []Report) ([]ReportResult, error)
}

// ReportResult is what recording one delivery report did.
type ReportResult uint8

const (
	// ReportRecorded: stored now, and its message moved if it still could.
	ReportRecorded ReportResult = iota
	// ReportSeen: stored before; nothing changed.
	ReportSeen
	// ReportUnknown: no message has the report's key.
	ReportUnknown
)

// ReportHandler serves POST /v1/sms/reports: it authenticates the
// gateway's signature, then records the report. It answers 401 to a bad or
// stale signature, 400 to a malformed report, 404 to an unknown message and
// 200 otherwise, also to a report it had already recorded.
//
// The gateway posts one report per request, from many connections at once.
// The reports that arrive while a batch is being recorded are recorded
// together in the next (reportBatcher), and each request is answered once
// its batch has committed.
func ReportHandler(store Reports, secret []byte, now func() time.Time, log *slog.Logger) http.Handler {
	batcher := newReportBatcher(store)
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
		if err != nil {
			httpapi.WriteError(w, httpapi.CodeTooLarge, nil)
			return
		}
		if len(secret) == 0 {
			log.Error("delivery report refused: no webhook secret configured")
			httpapi.WriteError(w, httpapi.CodeUnauthorized, nil)
			return
		}
		if err := Verify(secret, body, r.Header.Get(SignatureHeader), now()); err != nil {
			log.Warn("delivery report refused", slog.String("reason", err.Error()))
			httpapi.WriteError(w, httpapi.CodeUnauthorized, nil)
			return
		}
		var rep Report
		if err := json.Unmarshal(body, &rep); err != nil || rep.Key == "" || rep.MessageID == "" ||
			(rep.Status != ReportDelivered && rep.Status != ReportFailed) {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"report": "want message_id, idempotency_key and status delivered|failed"}})
			return
		}
		if rep.At.IsZero() {
			rep.At = now()
		}
		res, err := batcher.record(r.Context(), rep)
		if err == nil && res == ReportUnknown {
			err = prereg.ErrNotFound
		}
		if err != nil {
			if httpapi.Fail(w, err, nil) == httpapi.CodeInternal {
				log.Error("record delivery report", slog.Any("err", err))
			}
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"recorded": res == ReportRecorded})
	})
}

// ResendRequest is an operator's request to send an appointment's SMS
// again.
type ResendRequest struct {
	Appointment int64  `json:"appointment"`
	RequestedBy string `json:"-"`
	Reason      string `json:"reason,omitempty"`
}

// Resent is the new message version a resend created.
type Resent struct {
	OutboxID    int64  `json:"outbox_id"`
	Appointment int64  `json:"appointment"`
	Version     int    `json:"version"`
	Key         string `json:"idempotency_key"`
}

// Resender creates new message versions.
type Resender interface {
	// Resend adds version n+1 of the appointment's message. It is
	// prereg.ErrNotFound for an unknown appointment and prereg.ErrConflict
	// when the appointment is cancelled or its latest version still waits
	// to be sent.
	Resend(ctx context.Context, r ResendRequest) (Resent, error)
}

// ResendHandler serves POST /admin/v1/outbox/resend {"appointment":ID,
// "reason":"…"}; requestedBy names who asked, for the record.
func ResendHandler(store Resender, requestedBy func(*http.Request) string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ResendRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil || req.Appointment <= 0 {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"appointment": "want a positive appointment id"}})
			return
		}
		req.RequestedBy = requestedBy(r)
		res, err := store.Resend(r.Context(), req)
		if err != nil {
			var extra map[string]any
			if errors.Is(err, prereg.ErrConflict) {
				// The refusal is a *prereg.Error, whose text is its reason
				// alone, under the store's context ("resend appointment 7:
				// appointment cancelled"): no personal data, meant for the
				// operator.
				extra = map[string]any{"detail": err.Error()}
			}
			if httpapi.Fail(w, err, extra) == httpapi.CodeInternal {
				log.Error("resend", slog.Any("err", err))
			}
			return
		}
		log.Info("resend requested", slog.Int64("appointment", res.Appointment), slog.Int("version", res.Version), slog.String("by", req.RequestedBy))
		httpapi.WriteJSON(w, http.StatusCreated, res)
	})
}

// ConflictError says why a resend is refused: a *prereg.Error of kind
// prereg.ErrConflict whose message the answer shows as its "detail".
func ConflictError(why string) error { return prereg.Conflict(why) }
