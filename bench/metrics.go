package bench

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads a server's /metrics with the Prometheus text parser, which
// knows the exposition format (label order and escaping, histogram
// suffixes, comments) that matching line prefixes would have to guess at.
// It returns the families by name (none when the server cannot be read).
func scrape(url string) map[string]*dto.MetricFamily {
	res, err := http.Get(url + "/metrics")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil
	}
	return mfs
}

// shedCounts reads the intake's shed counters, by reason, from its
// /metrics.
func shedCounts(url string) string {
	mfs := scrape(url)
	if mfs == nil {
		return "unknown"
	}
	var parts []string
	for _, m := range mfs["prereg_intake_shed_total"].GetMetric() {
		reason := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" {
				reason = l.GetValue()
			}
		}
		parts = append(parts, fmt.Sprintf("%s:%g", reason, m.GetCounter().GetValue()))
	}
	if len(parts) == 0 {
		return "none"
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// groupAverage is the intents per publish of a server with group commit,
// over its whole life, from its group-size histogram (0 when unknown).
func groupAverage(url string) float64 {
	var sum, count float64
	for _, m := range scrape(url)["prereg_intake_group_size"].GetMetric() {
		h := m.GetHistogram()
		sum += h.GetSampleSum()
		count += float64(h.GetSampleCount())
	}
	return ratio(sum, count)
}
