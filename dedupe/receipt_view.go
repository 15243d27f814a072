package dedupe

import (
	"context"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// ReceiptView is what became of one submission, for an auditor or an
// operator (GET /admin/v1/receipts/{receipt}): its decision and why, the
// submission it was matched with, its review when held, and the
// appointment and SMS of the registration it belongs to. Pseudonymous
// only: receipts, ids, a prefix of the device's keyed hash; never a
// phone, a birth date, an identity or address key.
type ReceiptView struct {
	Receipt    string        `json:"receipt"`
	Campaign   string        `json:"campaign"`
	Window     string        `json:"window"`
	Provider   string        `json:"provider"`
	Decision   prereg.Kind   `json:"decision"`
	Reason     prereg.Reason `json:"reason,omitempty"`
	ReceivedAt time.Time     `json:"received_at"`
	DecidedAt  time.Time     `json:"decided_at"`
	// Device is a prefix of the device's keyed hash, as in the report.
	Device string `json:"device"`
	// Registration is the registration the decision made or matched (0:
	// none); FirstReceipt that registration's first submission.
	Registration int64  `json:"registration,omitempty"`
	FirstReceipt string `json:"first_receipt,omitempty"`
	// MatchedReceipt is, for a duplicate, the submission it matched.
	MatchedReceipt string     `json:"matched_receipt,omitempty"`
	Held           *HeldState `json:"held,omitempty"`
	// Unassigned is why the last round placed the registration nowhere.
	Unassigned  string              `json:"unassigned,omitempty"`
	Appointment *ReceiptAppointment `json:"appointment,omitempty"`
	SMS         []SMSVersion        `json:"sms"`
	// Purged is true once the campaign's personal data was removed.
	Purged bool `json:"purged"`
}

// HeldState is a held decision's review.
type HeldState struct {
	Review     string     `json:"review"` // "" while pending
	ReviewedBy string     `json:"reviewed_by,omitempty"`
	ReviewedAt *time.Time `json:"reviewed_at,omitempty"`
}

// ReceiptAppointment is the slot of the registration.
type ReceiptAppointment struct {
	ID         int64  `json:"id"`
	Clinic     string `json:"clinic"`
	ClinicName string `json:"clinic_name"`
	Day        string `json:"day"` // YYYY-MM-DD
	Band       int    `json:"band"`
	Time       string `json:"time,omitempty"` // the band's label, e.g. 09:00-12:00
	Status     string `json:"status"`
	RunID      int64  `json:"run_id,omitempty"`
}

// SMSVersion is one version of the appointment's SMS (a resend adds one).
// The gateway's error texts are left out: they may quote the number.
type SMSVersion struct {
	Version     int        `json:"version"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	RequestedBy string     `json:"requested_by,omitempty"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	FailedAt    *time.Time `json:"failed_at,omitempty"`
}

// ReceiptReader reads one receipt's view; prereg.ErrNotFound when no
// decision has that receipt (unknown, or not decided yet).
type ReceiptReader interface {
	ReceiptView(ctx context.Context, receipt string) (ReceiptView, error)
}

// ReceiptHandler answers GET /admin/v1/receipts/{receipt}: JSON, or the
// HTML page (?format=html, or an Accept that prefers text/html) in the
// report's style and under its policy.
func ReceiptHandler(store ReceiptReader, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		format := r.URL.Query().Get("format")
		if format == "" {
			format = FormatJSON
			if prefersHTML(r.Header.Get("Accept")) {
				format = FormatHTML
			}
		}
		if format != FormatJSON && format != FormatHTML {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"format": "want json or html"}})
			return
		}
		receipt := r.PathValue("receipt")
		if receipt == "" || len(receipt) > 128 {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"receipt": "want a receipt"}})
			return
		}
		v, err := store.ReceiptView(r.Context(), receipt)
		if err != nil {
			if httpapi.Fail(w, err, nil) == httpapi.CodeInternal {
				log.Error("receipt view", slog.Any("err", err))
			}
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if format == FormatJSON {
			httpapi.WriteJSON(w, http.StatusOK, v)
			return
		}
		w.Header().Set("Content-Type", ContentType(FormatHTML))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		httpapi.SetHTMLHeaders(w.Header(), ReportPolicy)
		if err := v.WriteHTML(w); err != nil {
			log.Warn("receipt view: write", slog.Any("err", err))
		}
	})
}

// WriteHTML renders the view as the page the admin API serves.
func (v ReceiptView) WriteHTML(w io.Writer) error { return receiptHTML.Execute(w, v) }

// prefersHTML is true when an Accept header names text/html before (or
// without) application/json: a browser's.
func prefersHTML(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/html":
			return true
		case "application/json":
			return false
		}
	}
	return false
}

var receiptHTML = template.Must(template.New("receipt").Funcs(template.FuncMap{
	"ts": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") + " UTC" },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Receipt {{.Receipt}}</title>
<style>` + reportStyle + `</style></head><body>
<h1>Receipt <code>{{.Receipt}}</code></h1>
<p>Campaign {{.Campaign}}, window {{.Window}}. Keys are keyed hashes; no personal data.{{if .Purged}} The campaign's personal data has been purged.{{end}}</p>
<h2>Decision</h2>
<table>
<tr><th>decision</th><td>{{.Decision}}</td></tr>
<tr><th>reason</th><td>{{if .Reason}}{{.Reason}}{{else}}–{{end}}</td></tr>
<tr><th>provider</th><td>{{.Provider}}</td></tr>
<tr><th>received</th><td>{{ts .ReceivedAt}}</td></tr>
<tr><th>decided</th><td>{{ts .DecidedAt}}</td></tr>
<tr><th>device (keyed hash)</th><td><code>{{.Device}}</code></td></tr>
{{if .Registration}}<tr><th>registration</th><td>{{.Registration}} (first receipt <code>{{.FirstReceipt}}</code>)</td></tr>{{end}}
{{if .MatchedReceipt}}<tr><th>matched receipt</th><td><code>{{.MatchedReceipt}}</code></td></tr>{{end}}
{{with .Held}}<tr><th>held review</th><td>{{if .Review}}{{.Review}} by {{.ReviewedBy}}{{with .ReviewedAt}} at {{ts .}}{{end}}{{else}}pending{{end}}</td></tr>{{end}}
{{if .Unassigned}}<tr><th>unassigned</th><td>{{.Unassigned}}</td></tr>{{end}}
</table>
{{with .Appointment}}<h2>Appointment</h2>
<table>
<tr><th>appointment</th><td>{{.ID}}{{if .RunID}} (allocation run {{.RunID}}){{end}}</td></tr>
<tr><th>clinic</th><td>{{.ClinicName}} ({{.Clinic}})</td></tr>
<tr><th>day</th><td>{{.Day}}</td></tr>
<tr><th>band</th><td>{{.Band}}{{if .Time}} ({{.Time}}){{end}}</td></tr>
<tr><th>status</th><td>{{.Status}}</td></tr>
</table>{{end}}
{{if .SMS}}<h2>SMS</h2>
<table><tr><th>version</th><th>state</th><th>attempts</th><th>requested by</th><th>sent</th><th>delivered</th><th>failed</th></tr>
{{range .SMS}}<tr><td>{{.Version}}</td><td>{{.State}}</td><td>{{.Attempts}}</td><td>{{if .RequestedBy}}{{.RequestedBy}}{{else}}–{{end}}</td>
<td>{{with .SentAt}}{{ts .}}{{else}}–{{end}}</td><td>{{with .DeliveredAt}}{{ts .}}{{else}}–{{end}}</td><td>{{with .FailedAt}}{{ts .}}{{else}}–{{end}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`))
