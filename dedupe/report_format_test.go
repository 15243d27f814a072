package dedupe_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

// sampleReport is a report as the store builds it, by hand.
func sampleReport() *dedupe.Report {
	r := &dedupe.Report{Campaign: "c<1>", GeneratedAt: time.Date(2021, 8, 10, 9, 0, 0, 0, time.UTC), Totals: dedupe.NewCounts(), DeviceCap: 4}
	for _, w := range []string{"d9", "d0"} {
		wc := dedupe.WindowCounts{Window: w, Counts: dedupe.NewCounts()}
		for _, d := range []struct {
			kind   prereg.Kind
			reason prereg.Reason
			n      int64
		}{
			{prereg.KindRegistered, "", 100}, {prereg.KindDuplicate, prereg.ReasonSameDevice, 40},
			{prereg.KindDuplicate, prereg.ReasonOtherDevice, 25}, {prereg.KindHeld, prereg.ReasonDeviceLimit, 6},
			{prereg.KindRejected, prereg.ReasonInvalidToken, 9},
		} {
			wc.Add(d.kind, d.reason, d.n)
			r.Totals.Add(d.kind, d.reason, d.n)
		}
		wc.PeopleRegistered = 100
		r.Totals.PeopleRegistered += 100
		r.Windows = append(r.Windows, wc)
	}
	h := dedupe.HourCounts{Hour: r.GeneratedAt.Add(-time.Hour), Counts: r.Totals}
	r.Hours = []dedupe.HourCounts{h}
	r.Reviews = dedupe.ReviewStats{Pending: 2, Released: 7, Rejected: 3}
	r.DevicePeople = []dedupe.DevicePeopleRow{{People: 1, Devices: 150}, {People: 2, Devices: 20}, {People: 4, Devices: 3}, {People: 9, Devices: 1}}
	r.TopDevices = []dedupe.DeviceRow{{Device: "0123456789abcdef", People: 9, Submissions: 14, Held: 5}}
	return r
}

// The CSV is RFC 4180 (encoding/csv reads it back) with one table per
// section, each opened by a header row, every row naming its section,
// and every row as wide as its table's header.
func TestReportCSVTables(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, sampleReport().Write(&b, dedupe.FormatCSV))
	rd := csv.NewReader(&b)
	rd.FieldsPerRecord = -1
	recs, err := rd.ReadAll()
	require.NoError(t, err, "the CSV parses")

	headers := map[string][]string{}
	rows := map[string]int{}
	var current []string
	for _, rec := range recs {
		require.GreaterOrEqual(t, len(rec), 2)
		if rec[0] == "section" {
			current = rec
			continue
		}
		require.NotNil(t, current, "a header row comes first")
		require.Len(t, rec, len(current), "row %v is as wide as its header %v", rec, current)
		if headers[rec[0]] == nil {
			headers[rec[0]] = current[1:]
		}
		rows[rec[0]]++
	}
	require.Equal(t, []string{"window", "kind", "reason", "count"}, headers["decisions"])
	require.Equal(t, []string{"people", "devices", "over_cap"}, headers["device_people"])
	require.Equal(t, map[string]int{"totals": 11, "windows": 2, "decisions": 10, "held_reviews": 3, "hours": 1, "device_people": 4, "top_devices": 1, "registrations_cancelled": 1}, rows)
	var found bool
	for _, rec := range recs {
		if rec[0] == "device_people" && rec[1] == "9" {
			require.Equal(t, []string{"device_people", "9", "1", "true"}, rec, "a device past the cap is flagged")
			found = true
		}
	}
	require.True(t, found)
}

// The JSON carries every figure and reads back to the same report.
func TestReportJSONRoundTrip(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	var b bytes.Buffer
	require.NoError(t, r.Write(&b, dedupe.FormatJSON))
	var back dedupe.Report
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Equal(t, r.Totals, back.Totals)
	require.Equal(t, r.DevicePeople, back.DevicePeople)
	require.Equal(t, r.DeviceCap, back.DeviceCap)
	require.Equal(t, r.Reviews, back.Reviews)
}

// The HTML holds three inline SVG charts (decisions by reason and window,
// held outcomes, device-cap distribution) with escaped labels, a print
// stylesheet, and nothing that needs a network, a script or an inline
// style attribute.
func TestReportHTMLCharts(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, sampleReport().Write(&b, dedupe.FormatHTML))
	page := b.String()
	require.Equal(t, 3, strings.Count(page, "<svg "), "three charts")
	require.Contains(t, page, "@media print")
	require.Contains(t, page, "@page")
	require.NotRegexp(t, `(?i)\sstyle=`, page)
	require.NotContains(t, page, "<script")
	require.NotRegexp(t, `(?i)(src|href)=`, page, "no outside asset")
	require.NotContains(t, page, "c<1>", "labels are escaped")
	require.Contains(t, page, "c&lt;1&gt;")
	require.Contains(t, page, "duplicate: same_device (80)", "the legend counts each reason")
	require.Contains(t, page, "cap 4", "the device chart marks the cap")
	require.Regexp(t, regexp.MustCompile(`<rect [^>]*fill="#dc2626"><title>9 people: 1 devices</title>`), page, "a device past the cap is drawn red")
	require.Contains(t, page, "released: 7")
}
