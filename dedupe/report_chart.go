package dedupe

import (
	"fmt"
	"html"
	"html/template"
	"slices"
	"strings"

	"github.com/prereg/prereg"
)

// The HTML report's charts are inline SVG drawn here: rectangles, lines
// and text with presentation attributes only (fill, stroke), never a
// style attribute, a script or an outside reference, so that they render
// under ReportPolicy and print as they show. Every label is escaped.

// kindColours are the base colours of the four kinds; a kind's reasons
// take its colour in lighter steps.
var kindColours = map[prereg.Kind][]string{
	prereg.KindRegistered: {"#2563eb"},
	prereg.KindDuplicate:  {"#d97706", "#f59e0b", "#fbbf24", "#fcd34d", "#fde68a"},
	prereg.KindHeld:       {"#dc2626", "#ef4444", "#f87171", "#fca5a5"},
	prereg.KindRejected:   {"#374151", "#6b7280", "#9ca3af", "#d1d5db", "#e5e7eb", "#f3f4f6"},
}

// series is one segment kind of the decisions chart: a kind and a reason.
type series struct {
	kind   prereg.Kind
	reason prereg.Reason
	colour string
}

func (s series) label() string {
	if s.reason == "" {
		return string(s.kind)
	}
	return string(s.kind) + ": " + string(s.reason)
}

// decisionSeries lists the (kind, reason) pairs the report counts, in
// kind order then reason order, each with its colour.
func decisionSeries(t Counts) []series {
	out := []series{{kind: prereg.KindRegistered, colour: kindColours[prereg.KindRegistered][0]}}
	for _, k := range []struct {
		kind prereg.Kind
		m    map[prereg.Reason]int64
	}{{prereg.KindDuplicate, t.Duplicates}, {prereg.KindHeld, t.Held}, {prereg.KindRejected, t.Rejected}} {
		rs := make([]string, 0, len(k.m))
		for r := range k.m {
			rs = append(rs, string(r))
		}
		slices.Sort(rs)
		pal := kindColours[k.kind]
		for i, r := range rs {
			out = append(out, series{kind: k.kind, reason: prereg.Reason(r), colour: pal[min(i, len(pal)-1)]})
		}
	}
	return out
}

func (s series) count(c Counts) int64 {
	switch s.kind {
	case prereg.KindRegistered:
		return c.Registered
	case prereg.KindDuplicate:
		return c.Duplicates[s.reason]
	case prereg.KindHeld:
		return c.Held[s.reason]
	default:
		return c.Rejected[s.reason]
	}
}

// svg collects one chart.
type svg struct {
	b    strings.Builder
	w, h int
}

func newSVG(w, h int, title string) *svg {
	s := &svg{w: w, h: h}
	fmt.Fprintf(&s.b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`,
		w, h, w, h, html.EscapeString(title), html.EscapeString(title))
	return s
}

func (s *svg) rect(x, y, w, h float64, fill, title string) {
	fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">`, x, y, max(w, 0), max(h, 0), fill)
	if title != "" {
		fmt.Fprintf(&s.b, `<title>%s</title>`, html.EscapeString(title))
	}
	s.b.WriteString(`</rect>`)
}

func (s *svg) text(x, y float64, anchor, text string) {
	fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="%s" fill="#111827">%s</text>`,
		x, y, anchor, html.EscapeString(text))
}

func (s *svg) line(x1, y1, x2, y2 float64, stroke string) {
	fmt.Fprintf(&s.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="4 3"/>`, x1, y1, x2, y2, stroke)
}

func (s *svg) done() template.HTML {
	s.b.WriteString(`</svg>`)
	return template.HTML(s.b.String()) //nolint:gosec // numbers and escaped labels only
}

// DecisionsChart draws, per window, one bar of the window's submissions
// split by decision kind and reason, with a legend.
func (r *Report) DecisionsChart() template.HTML {
	ser := decisionSeries(r.Totals)
	const left, barH, gap, width = 70.0, 18.0, 8.0, 560.0
	legendRows := (len(ser) + 2) / 3
	h := int(float64(len(r.Windows))*(barH+gap) + 20 + float64(legendRows)*16 + 10)
	s := newSVG(int(left+width+90), h, "Decisions by reason and window")
	var most int64
	for _, w := range r.Windows {
		most = max(most, w.Submissions)
	}
	y := 10.0
	for _, w := range r.Windows {
		s.text(left-6, y+barH-5, "end", w.Window)
		x := left
		for _, se := range ser {
			n := se.count(w.Counts)
			if n == 0 || most == 0 {
				continue
			}
			bw := width * float64(n) / float64(most)
			s.rect(x, y, bw, barH, se.colour, fmt.Sprintf("%s %s: %d", w.Window, se.label(), n))
			x += bw
		}
		s.text(x+4, y+barH-5, "start", fmt.Sprint(w.Submissions))
		y += barH + gap
	}
	y += 10
	for i, se := range ser {
		lx := left + float64(i%3)*200
		ly := y + float64(i/3)*16
		s.rect(lx, ly-9, 10, 10, se.colour, "")
		s.text(lx+14, ly, "start", fmt.Sprintf("%s (%d)", se.label(), se.count(r.Totals)))
	}
	return s.done()
}

// HeldChart draws the held submissions by review outcome.
func (r *Report) HeldChart() template.HTML {
	rows := []struct {
		label  string
		n      int64
		colour string
	}{
		{"pending review", r.Reviews.Pending, "#f59e0b"},
		{"released", r.Reviews.Released, "#2563eb"},
		{"rejected", r.Reviews.Rejected, "#6b7280"},
	}
	const left, barH, gap, width = 110.0, 18.0, 8.0, 400.0
	s := newSVG(int(left+width+70), int(3*(barH+gap)+12), "Held submissions by review")
	most := max(r.Reviews.Pending, r.Reviews.Released, r.Reviews.Rejected, 1)
	y := 6.0
	for _, row := range rows {
		s.text(left-6, y+barH-5, "end", row.label)
		bw := width * float64(row.n) / float64(most)
		s.rect(left, y, bw, barH, row.colour, fmt.Sprintf("%s: %d", row.label, row.n))
		s.text(left+bw+4, y+barH-5, "start", fmt.Sprint(row.n))
		y += barH + gap
	}
	return s.done()
}

// DeviceCapChart draws how many devices sent for 1, 2, 3 … distinct
// people in a window, the campaign's cap as a dashed line: the bars past
// it are the devices whose extra people were held.
func (r *Report) DeviceCapChart() template.HTML {
	const left, bottom, plotH, plotW = 50.0, 30.0, 160.0, 560.0
	const top = 20.0
	s := newSVG(int(left+plotW+20), int(top+plotH+bottom+8), "Devices by distinct people per window")
	n := len(r.DevicePeople)
	if n == 0 {
		s.text(left, plotH/2, "start", "no devices")
		return s.done()
	}
	var most int64 = 1
	for _, b := range r.DevicePeople {
		most = max(most, b.Devices)
	}
	slot := plotW / float64(n)
	bw := max(slot*0.8, 1)
	for i, b := range r.DevicePeople {
		x := left + float64(i)*slot
		h := plotH * float64(b.Devices) / float64(most)
		fill := "#2563eb"
		if r.DeviceCap > 0 && b.People > r.DeviceCap {
			fill = "#dc2626"
		}
		s.rect(x, top+plotH-h, bw, h, fill, fmt.Sprintf("%d people: %d devices", b.People, b.Devices))
		if n <= 30 {
			s.text(x+bw/2, top+plotH-h-3, "middle", fmt.Sprint(b.Devices))
		}
		if n <= 30 || i%(n/30+1) == 0 {
			s.text(x+bw/2, top+plotH+14, "middle", fmt.Sprint(b.People))
		}
		// The cap's line goes after the last bar within it, whether or
		// not a bar sits exactly on it.
		if r.DeviceCap > 0 && b.People <= r.DeviceCap && (i == n-1 || r.DevicePeople[i+1].People > r.DeviceCap) {
			lx := x + slot - (slot-bw)/2
			s.line(lx, top, lx, top+plotH, "#dc2626")
			s.text(lx+4, top+10, "start", fmt.Sprintf("cap %d", r.DeviceCap))
		}
	}
	s.text(left-6, top+10, "end", fmt.Sprint(most))
	s.text(left-6, top+plotH, "end", "0")
	s.text(left+plotW/2, top+plotH+28, "middle", "distinct people per device and window")
	return s.done()
}
