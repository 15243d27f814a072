package world

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/sim"
)

// LoadReport is what a load run did against what the surge's truth
// expected: the --format json output of `prereg loadgen`.
type LoadReport struct {
	Target      string         `json:"target"`
	Campaign    string         `json:"campaign"`
	Seed        int64          `json:"seed"`
	Submitted   int            `json:"submitted"`
	Sent        int            `json:"sent"`
	Attempts    int            `json:"attempts"`
	Errors      int            `json:"errors"`
	Statuses    map[string]int `json:"statuses"`
	Expected    map[string]int `json:"expected_statuses"`
	Accepted    int            `json:"accepted"`
	Mismatches  int            `json:"status_mismatches"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_s"`
	P50Ms       float64        `json:"p50_ms"`
	P99Ms       float64        `json:"p99_ms"`
	Mix         map[string]int `json:"mix"`
	Mode        string         `json:"mode"`
	Connections int            `json:"connections,omitempty"`
	Rate        float64        `json:"rate,omitempty"`
}

// SummarizeLoad scores a load run of surge against target: the answers
// by status beside those the truth expected, and how many differ.
func SummarizeLoad(surge *sim.Surge, res *sim.LoadResult, target string, seed int64, cfg sim.LoadConfig) LoadReport {
	truth := surge.Truth()
	exp := truth.Expected()
	sc := truth.Score(res.Answers, nil)
	rep := LoadReport{
		Target: target, Campaign: surge.Campaign.ID, Seed: seed,
		Submitted: len(surge.Submissions), Sent: res.Sent, Attempts: res.Attempts, Errors: res.Errors,
		Statuses: map[string]int{}, Expected: map[string]int{}, Accepted: sc.Accepted,
		Seconds: res.Elapsed.Seconds(), PerSecond: res.PerSecond(),
		P50Ms: float64(res.P50) / float64(time.Millisecond), P99Ms: float64(res.P99) / float64(time.Millisecond),
		Mix: map[string]int{}, Mode: "closed", Connections: cfg.Connections, Rate: cfg.Rate,
	}
	if cfg.Rate > 0 {
		rep.Mode, rep.Connections = "open", 0
	} else if rep.Connections == 0 {
		rep.Connections = 64
	}
	for st, n := range res.ByStatus {
		rep.Statuses[fmt.Sprint(st)] = n
	}
	for st, n := range exp.Status {
		rep.Expected[fmt.Sprint(st)] = n
	}
	for class, n := range surge.Counts() {
		rep.Mix[string(class)] = n
	}
	for i, a := range res.Answers {
		if a.Status != surge.Submissions[i].Want.Status {
			rep.Mismatches++
		}
	}
	return rep
}

// LoadSurge is the surge of a load run (`prereg loadgen`): n submissions
// drawn with seed, for the campaign campaignArg names, signed by its
// providers. campaignArg is "demo" (the campaign `prereg dev` loads, with
// the named providers) or a campaign file. idpSecret and ciSecret are the
// simulated providers' secrets; empty, the demo's, as for `prereg sim idp`.
func LoadSurge(campaignArg, providers, idpSecret, ciSecret string, n int, seed int64, now time.Time) (*sim.Surge, error) {
	var c *campaign.Campaign
	var err error
	if campaignArg == "demo" {
		urls := map[string]string{}
		for _, name := range strings.Split(providers, ",") {
			if name = strings.TrimSpace(name); name != "" {
				urls[name] = "http://127.0.0.1:9101" // not called: the load generator only issues tokens
			}
		}
		if c, err = sim.DemoCampaign(now, urls, nil); err != nil {
			return nil, err
		}
	} else if c, err = campaign.LoadFile(campaignArg); err != nil {
		return nil, err
	}
	idps := map[string]*sim.IdP{}
	for _, p := range c.Providers {
		idps[p.Name] = sim.ConfiguredIdP(p.Name, idpSecret, ciSecret)
	}
	pop, err := sim.NewPopulation(seed, sim.PeopleFor(n, c, now), c.Cohort)
	if err != nil {
		return nil, err
	}
	return sim.NewSurge(pop, sim.SurgeConfig{Submissions: n, Seed: seed, Campaign: c, Providers: idps, Now: now})
}

// Print writes the report for people: the rate, the latency and each
// status answered against the number the truth expected.
func (r LoadReport) Print(w io.Writer) {
	fmt.Fprintf(w, "  sent %d of %d in %.1fs (%.0f/s), %d requests with retries, %d transport errors\n",
		r.Sent, r.Submitted, r.Seconds, r.PerSecond, r.Attempts, r.Errors)
	fmt.Fprintf(w, "  latency p50 %.1f ms, p99 %.1f ms\n", r.P50Ms, r.P99Ms)
	fmt.Fprintf(w, "  %-8s %10s %10s\n", "status", "answered", "expected")
	statuses := map[string]bool{}
	for k := range r.Statuses {
		statuses[k] = true
	}
	for k := range r.Expected {
		statuses[k] = true
	}
	sorted := make([]string, 0, len(statuses))
	for k := range statuses {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		fmt.Fprintf(w, "  %-8s %10d %10d\n", k, r.Statuses[k], r.Expected[k])
	}
	fmt.Fprintf(w, "  %d distinct receipts; %d answers differ from the truth's expectation\n", r.Accepted, r.Mismatches)
}
