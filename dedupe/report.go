package dedupe

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// Report is the auditor's dedupe report: what came in, what became of it
// and why, per window and per hour, the devices that sent for the most
// people, and what the Bloom filters and claim_seen saved. It holds
// pseudonymous keys and counts only: no personal data in any format.
// `prereg report dedupe` and GET /admin/v1/reports/dedupe both render it.
type Report struct {
	Campaign    string         `json:"campaign"`
	Window      string         `json:"window,omitempty"` // "" for every window
	GeneratedAt time.Time      `json:"generated_at"`
	Totals      Counts         `json:"totals"`
	Windows     []WindowCounts `json:"windows"`
	Hours       []HourCounts   `json:"hours"`
	TopDevices  []DeviceRow    `json:"top_devices"`
	Bloom       BloomStats     `json:"bloom"`
	// ProviderCallsSaved counts the submissions verify decided as
	// claim_seen without calling the identity provider.
	ProviderCallsSaved int64       `json:"provider_calls_saved"`
	Reviews            ReviewStats `json:"reviews"`
	// DeviceCap is the campaign's cap of distinct people per device and
	// window; DevicePeople how many devices sent for each number of
	// people in a window, ascending (a device in two windows counts
	// twice).
	DeviceCap    int               `json:"device_cap"`
	DevicePeople []DevicePeopleRow `json:"device_people"`
	// Cancellations count the citizens' cancellations that took effect,
	// per window and per decision of the submission they were asked with.
	Cancellations []CancellationRow `json:"cancellations"`
	// RegistrationsCancelled counts the registrations they cancelled (a
	// person may cancel from several of their receipts).
	RegistrationsCancelled int64 `json:"registrations_cancelled"`
}

// DevicePeopleRow is one bar of the device-cap distribution: Devices sent
// for exactly People distinct people in a window.
type DevicePeopleRow struct {
	People  int   `json:"people"`
	Devices int64 `json:"devices"`
}

// CancellationRow counts the cancellations asked with the submissions of
// one window that one kind of decision decided.
type CancellationRow struct {
	Window        string      `json:"window"`
	Decision      prereg.Kind `json:"decision"`
	Cancellations int64       `json:"cancellations"`
}

// Counts are the decisions of a slice of submissions.
type Counts struct {
	Submissions      int64                   `json:"submissions"`
	Accepted         int64                   `json:"accepted"` // not rejected
	PeopleRegistered int64                   `json:"people_registered"`
	Registered       int64                   `json:"registered"`
	Duplicates       map[prereg.Reason]int64 `json:"duplicates"`
	Held             map[prereg.Reason]int64 `json:"held"`
	Rejected         map[prereg.Reason]int64 `json:"rejected"`
}

// NewCounts returns empty counts.
func NewCounts() Counts {
	return Counts{Duplicates: map[prereg.Reason]int64{}, Held: map[prereg.Reason]int64{}, Rejected: map[prereg.Reason]int64{}}
}

// Add counts n decisions of a kind and reason.
func (c *Counts) Add(kind prereg.Kind, reason prereg.Reason, n int64) {
	c.Submissions += n
	switch kind {
	case prereg.KindRegistered:
		c.Registered += n
		c.Accepted += n
	case prereg.KindDuplicate:
		c.Duplicates[reason] += n
		c.Accepted += n
	case prereg.KindHeld:
		c.Held[reason] += n
		c.Accepted += n
	case prereg.KindRejected:
		c.Rejected[reason] += n
	}
}

// DuplicateTotal sums the duplicates.
func (c Counts) DuplicateTotal() int64 { return sum(c.Duplicates) }

// HeldTotal sums the held.
func (c Counts) HeldTotal() int64 { return sum(c.Held) }

// RejectedTotal sums the rejected.
func (c Counts) RejectedTotal() int64 { return sum(c.Rejected) }

func sum(m map[prereg.Reason]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// WindowCounts are one window's counts.
type WindowCounts struct {
	Window string `json:"window"`
	Counts
}

// HourCounts are the counts of the submissions received in one hour.
type HourCounts struct {
	Hour time.Time `json:"hour"`
	Counts
}

// DeviceRow is a device that sent for many distinct people; Device is a
// prefix of its keyed hash, never the device id.
type DeviceRow struct {
	Device      string `json:"device"`
	People      int64  `json:"people"`
	Submissions int64  `json:"submissions"`
	Held        int64  `json:"held"`
}

// BloomStats are the Bloom filters' counters over every shard.
type BloomStats struct {
	MaybeSeen      int64 `json:"maybe_seen"`
	FalsePositives int64 `json:"false_positives"`
}

// ReviewStats count the held decisions by review.
type ReviewStats struct {
	Pending  int64 `json:"pending"`
	Released int64 `json:"released"`
	Rejected int64 `json:"rejected"`
}

// Report formats.
const (
	FormatText = "text"
	FormatJSON = "json"
	FormatCSV  = "csv"
	FormatHTML = "html"
)

// ContentType is the media type of a report format.
func ContentType(format string) string {
	switch format {
	case FormatJSON:
		return "application/json; charset=utf-8"
	case FormatCSV:
		return "text/csv; charset=utf-8"
	case FormatHTML:
		return "text/html; charset=utf-8"
	default:
		return "text/plain; charset=utf-8"
	}
}

// Write renders the report in a format: text, json, csv or html.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case FormatText, "":
		return r.writeText(w)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatCSV:
		return r.writeCSV(w)
	case FormatHTML:
		return reportHTML.Execute(w, r)
	default:
		return fmt.Errorf("unknown report format %q (want text, json, csv or html)", format)
	}
}

func reasons(m map[prereg.Reason]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatInt(m[prereg.Reason(k)], 10)
	}
	return strings.Join(parts, " ")
}

func (r *Report) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	scope := "all windows"
	if r.Window != "" {
		scope = "window " + r.Window
	}
	fmt.Fprintf(tw, "Dedupe report: %s, %s (generated %s)\n\n", r.Campaign, scope, r.GeneratedAt.UTC().Format(time.RFC3339))
	t := r.Totals
	fmt.Fprintf(tw, "submissions\t%d\n", t.Submissions)
	fmt.Fprintf(tw, "accepted\t%d\n", t.Accepted)
	fmt.Fprintf(tw, "people registered\t%d\n", t.PeopleRegistered)
	fmt.Fprintf(tw, "duplicates\t%d\t%s\n", t.DuplicateTotal(), reasons(t.Duplicates))
	fmt.Fprintf(tw, "held\t%d\t%s\n", t.HeldTotal(), reasons(t.Held))
	fmt.Fprintf(tw, "  reviews\tpending=%d released=%d rejected=%d\n", r.Reviews.Pending, r.Reviews.Released, r.Reviews.Rejected)
	fmt.Fprintf(tw, "rejected\t%d\t%s\n", t.RejectedTotal(), reasons(t.Rejected))
	fmt.Fprintf(tw, "provider calls saved\t%d\n", r.ProviderCallsSaved)
	fmt.Fprintf(tw, "bloom maybe-seen\t%d\n", r.Bloom.MaybeSeen)
	fmt.Fprintf(tw, "bloom false positives\t%d\n", r.Bloom.FalsePositives)
	fmt.Fprintln(tw, "\nwindow\tsubmissions\taccepted\tpeople\tduplicates\theld\trejected")
	for _, wc := range r.Windows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", wc.Window, wc.Submissions, wc.Accepted, wc.PeopleRegistered, wc.DuplicateTotal(), wc.HeldTotal(), wc.RejectedTotal())
	}
	fmt.Fprintln(tw, "\nhour (UTC)\tsubmissions\tregistered\tduplicates\theld\trejected")
	for _, h := range r.Hours {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", h.Hour.UTC().Format("2006-01-02 15:00"), h.Submissions, h.Registered, h.DuplicateTotal(), h.HeldTotal(), h.RejectedTotal())
	}
	fmt.Fprintf(tw, "\ndistinct people per device and window (cap %d)\tdevices\n", r.DeviceCap)
	for _, d := range r.DevicePeople {
		fmt.Fprintf(tw, "%d\t%d\n", d.People, d.Devices)
	}
	fmt.Fprintln(tw, "\ndevice (keyed hash)\tpeople\tsubmissions\theld")
	for _, d := range r.TopDevices {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", d.Device, d.People, d.Submissions, d.Held)
	}
	fmt.Fprintf(tw, "\nregistrations cancelled\t%d\n", r.RegistrationsCancelled)
	fmt.Fprintln(tw, "window\tdecision\tcancellations")
	for _, c := range r.Cancellations {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.Window, c.Decision, c.Cancellations)
	}
	return tw.Flush()
}

// writeCSV writes one table per section, each opened by its header row
// (RFC 4180, encoding/csv). Every row, header too, starts with the
// section's name, so one file holds every table and a reader finds each
// by its first field: a header row's second field onward names the
// columns of the rows after it.
func (r *Report) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	table := func(section string, header []string, rows [][]string) {
		_ = cw.Write(append([]string{"section"}, header...))
		for _, row := range rows {
			_ = cw.Write(append([]string{section}, row...))
		}
	}
	t := r.Totals
	table("totals", []string{"campaign", "window", "metric", "value"}, func() (rows [][]string) {
		for _, m := range []struct {
			name string
			v    int64
		}{
			{"submissions", t.Submissions}, {"accepted", t.Accepted}, {"people_registered", t.PeopleRegistered},
			{"registered", t.Registered}, {"duplicates", t.DuplicateTotal()}, {"held", t.HeldTotal()},
			{"rejected", t.RejectedTotal()}, {"provider_calls_saved", r.ProviderCallsSaved},
			{"bloom_maybe_seen", r.Bloom.MaybeSeen}, {"bloom_false_positives", r.Bloom.FalsePositives},
			{"device_cap", int64(r.DeviceCap)},
		} {
			rows = append(rows, []string{r.Campaign, r.Window, m.name, n(m.v)})
		}
		return rows
	}())
	// Hours count submissions, not people: a person's registration
	// belongs to a window.
	countsRow := func(key string, c Counts, people bool) []string {
		row := []string{key, n(c.Submissions), n(c.Accepted), n(c.Registered), n(c.DuplicateTotal()), n(c.HeldTotal()), n(c.RejectedTotal())}
		if people {
			row = append(row, n(c.PeopleRegistered))
		}
		return row
	}
	countsHeader := func(key string, people bool) []string {
		h := []string{key, "submissions", "accepted", "registered", "duplicates", "held", "rejected"}
		if people {
			h = append(h, "people_registered")
		}
		return h
	}
	var rows [][]string
	for _, wc := range r.Windows {
		rows = append(rows, countsRow(wc.Window, wc.Counts, true))
	}
	table("windows", countsHeader("window", true), rows)
	rows = nil
	ser := decisionSeries(r.Totals)
	for _, wc := range r.Windows {
		for _, se := range ser {
			if v := se.count(wc.Counts); v > 0 {
				rows = append(rows, []string{wc.Window, string(se.kind), string(se.reason), n(v)})
			}
		}
	}
	table("decisions", []string{"window", "kind", "reason", "count"}, rows)
	table("held_reviews", []string{"review", "count"}, [][]string{
		{"pending", n(r.Reviews.Pending)}, {"released", n(r.Reviews.Released)}, {"rejected", n(r.Reviews.Rejected)},
	})
	rows = nil
	for _, h := range r.Hours {
		rows = append(rows, countsRow(h.Hour.UTC().Format(time.RFC3339), h.Counts, false))
	}
	table("hours", countsHeader("hour", false), rows)
	rows = nil
	for _, d := range r.DevicePeople {
		rows = append(rows, []string{strconv.Itoa(d.People), n(d.Devices), strconv.FormatBool(r.DeviceCap > 0 && d.People > r.DeviceCap)})
	}
	table("device_people", []string{"people", "devices", "over_cap"}, rows)
	rows = nil
	for _, d := range r.TopDevices {
		rows = append(rows, []string{d.Device, n(d.People), n(d.Submissions), n(d.Held)})
	}
	table("top_devices", []string{"device", "people", "submissions", "held"}, rows)
	rows = nil
	for _, c := range r.Cancellations {
		rows = append(rows, []string{c.Window, string(c.Decision), n(c.Cancellations)})
	}
	table("cancellations", []string{"window", "decision", "cancellations"}, rows)
	table("registrations_cancelled", []string{"count"}, [][]string{{n(r.RegistrationsCancelled)}})
	cw.Flush()
	return cw.Error()
}

// reportStyle is the HTML report's one inline style block. Bar widths are
// classes (w0 … w100, whole percents) rather than style attributes, so
// that the admin API can serve the report under a policy that allows
// this block by its hash and no other inline style (ReportPolicy).
var reportStyle = func() string {
	var b strings.Builder
	b.WriteString(`
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.bar{display:inline-block;height:.8rem;background:#3b82f6}
.dup{background:#f59e0b}.held{background:#ef4444}.rej{background:#6b7280}.bars{width:16rem}
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#4b5563}svg{max-width:100%;height:auto}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}table,figure{break-inside:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
@page{size:A4;margin:15mm}
`)
	for i := 0; i <= 100; i++ {
		fmt.Fprintf(&b, ".w%d{width:%d%%}", i, i)
	}
	b.WriteString("\n")
	return b.String()
}()

// ReportPolicy is the Content-Security-Policy the HTML report is served
// under: httpapi.HTMLPolicy with the report's own style block.
var ReportPolicy = httpapi.HTMLPolicy(httpapi.StyleHash(reportStyle))

var reportHTML = template.Must(template.New("report").Funcs(template.FuncMap{
	// pct is part of whole in whole percents, the bars' width classes.
	"pct": func(part, whole int64) int {
		if whole <= 0 {
			return 0
		}
		return int(min(100, max(0, (100*part+whole/2)/whole)))
	},
	"hour":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:00") },
	"reasons": reasons,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dedupe report: {{.Campaign}}</title>
<style>` + reportStyle + `</style></head><body>
<h1>Dedupe report: {{.Campaign}}{{if .Window}}, window {{.Window}}{{end}}</h1>
<p>Generated {{.GeneratedAt.UTC.Format "2006-01-02 15:04:05"}} UTC. Keys are keyed hashes; no personal data.</p>
<table>
<tr><th>submissions</th><td>{{.Totals.Submissions}}</td><td></td></tr>
<tr><th>accepted</th><td>{{.Totals.Accepted}}</td><td></td></tr>
<tr><th>people registered</th><td>{{.Totals.PeopleRegistered}}</td><td><span class="bar w{{pct .Totals.PeopleRegistered .Totals.Submissions}}"></span></td></tr>
<tr><th>duplicates</th><td>{{.Totals.DuplicateTotal}}</td><td>{{reasons .Totals.Duplicates}}</td></tr>
<tr><th>held</th><td>{{.Totals.HeldTotal}}</td><td>{{reasons .Totals.Held}} (pending {{.Reviews.Pending}}, released {{.Reviews.Released}}, rejected {{.Reviews.Rejected}})</td></tr>
<tr><th>rejected</th><td>{{.Totals.RejectedTotal}}</td><td>{{reasons .Totals.Rejected}}</td></tr>
<tr><th>provider calls saved</th><td>{{.ProviderCallsSaved}}</td><td></td></tr>
<tr><th>Bloom false positives</th><td>{{.Bloom.FalsePositives}}</td><td>of {{.Bloom.MaybeSeen}} maybe-seen</td></tr>
</table>
<h2>Decisions by reason and window</h2>
<figure>{{.DecisionsChart}}<figcaption>Each bar is a window's submissions, split by decision and reason; hover a segment for its count.</figcaption></figure>
<h2>Held submissions</h2>
<figure>{{.HeldChart}}<figcaption>Held for review: pending, released (registered unless the person already was), rejected.</figcaption></figure>
<h2>Device-cap distribution</h2>
<figure>{{.DeviceCapChart}}<figcaption>Devices by the number of distinct people they sent for in one window; past the cap ({{.DeviceCap}}), a device's further people were held.</figcaption></figure>
<h2>Per window</h2>
<table><tr><th>window</th><th>submissions</th><th>people</th><th>duplicates</th><th>held</th><th>rejected</th><th></th></tr>
{{range .Windows}}<tr><td>{{.Window}}</td><td>{{.Submissions}}</td><td>{{.PeopleRegistered}}</td><td>{{.DuplicateTotal}}</td><td>{{.HeldTotal}}</td><td>{{.RejectedTotal}}</td>
<td class="bars"><span class="bar w{{pct .Registered .Submissions}}"></span><span class="bar dup w{{pct .DuplicateTotal .Submissions}}"></span><span class="bar held w{{pct .HeldTotal .Submissions}}"></span><span class="bar rej w{{pct .RejectedTotal .Submissions}}"></span></td></tr>
{{end}}</table>
<h2>Per hour (UTC)</h2>
<table><tr><th>hour</th><th>submissions</th><th>registered</th><th>duplicates</th><th>held</th><th>rejected</th></tr>
{{range .Hours}}<tr><td>{{hour .Hour}}</td><td>{{.Submissions}}</td><td>{{.Registered}}</td><td>{{.DuplicateTotal}}</td><td>{{.HeldTotal}}</td><td>{{.RejectedTotal}}</td></tr>
{{end}}</table>
<h2>Devices with the most distinct people</h2>
<table><tr><th>device (keyed hash)</th><th>people</th><th>submissions</th><th>held</th></tr>
{{range .TopDevices}}<tr><td><code>{{.Device}}</code></td><td>{{.People}}</td><td>{{.Submissions}}</td><td>{{.Held}}</td></tr>
{{end}}</table>
<h2>Cancellations</h2>
<p>{{.RegistrationsCancelled}} registrations cancelled.</p>
<table><tr><th>window</th><th>decision of the submission</th><th>cancellations</th></tr>
{{range .Cancellations}}<tr><td>{{.Window}}</td><td>{{.Decision}}</td><td>{{.Cancellations}}</td></tr>
{{end}}</table>
</body></html>
`))
