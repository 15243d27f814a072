package world

import (
	"cmp"
	"errors"
	"flag"
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

// LoadOptions are a load run's surge and how it is sent: the options of
// `prereg loadgen`.
type LoadOptions struct {
	// Campaign is "demo" (the campaign `prereg dev` loads, with Providers,
	// comma-separated) or a campaign file.
	Campaign    string
	Providers   string
	Submissions int
	Seed        int64
	sim.LoadConfig
}

// Flags defines the flags of `prereg loadgen` that set o on fs, with
// their defaults.
func (o *LoadOptions) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Target, "target", "http://127.0.0.1:8080", "base URL of a running intake (loopback only unless --allow-remote)")
	fs.StringVar(&o.Campaign, "campaign", "demo", `"demo" (the campaign prereg dev loads) or a campaign file (YAML)`)
	fs.StringVar(&o.Providers, "providers", "pass,kakao", "with --campaign demo: the identity providers' names")
	fs.IntVar(&o.Submissions, "submissions", 100_000, "submissions in the surge")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the population and the surge")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: submissions per second (default: closed loop)")
	fs.IntVar(&o.Connections, "connections", 0, "closed loop: concurrent connections (default 64)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "stop sending after this long")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a target that is not a loopback address")
}

// Check refuses options `prereg loadgen` cannot run with.
func (o LoadOptions) Check() error {
	if o.Rate < 0 || o.Connections < 0 || o.Submissions < 1 || o.Duration <= 0 {
		return errors.New("--rate, --connections, --submissions and --duration must be positive")
	}
	if o.Submissions > 10_000_000 {
		return errors.New("--submissions: at most 10,000,000 (the surge is held in memory)")
	}
	return nil
}

// loadMode is how cfg sends: "open" loop at its rate, or "closed" loop on
// its connections (64 when 0).
func loadMode(cfg sim.LoadConfig) (mode string, conns int) {
	if cfg.Rate > 0 {
		return "open", 0
	}
	return "closed", cmp.Or(cfg.Connections, 64)
}

// PrintLoadStart writes the line `prereg loadgen` starts with: what it
// sends, where and how.
func PrintLoadStart(w io.Writer, surge *sim.Surge, o LoadOptions) {
	mode, conns := loadMode(o.LoadConfig)
	how := fmt.Sprintf("closed loop, %d connections", conns)
	if mode == "open" {
		how = fmt.Sprintf("open loop at %.0f/s", o.Rate)
	}
	fmt.Fprintf(w, "loadgen: %d submissions (seed %d, campaign %s) to %s, %s\n", o.Submissions, o.Seed, surge.Campaign.ID, o.Target, how)
}

// SummarizeLoad scores a load run of surge as o sent it: the answers by
// status beside those the truth expected, and how many differ.
func SummarizeLoad(surge *sim.Surge, res *sim.LoadResult, o LoadOptions) LoadReport {
	truth := surge.Truth()
	exp := truth.Expected()
	sc := truth.Score(res.Answers, nil)
	rep := LoadReport{
		Target: o.Target, Campaign: surge.Campaign.ID, Seed: o.Seed,
		Submitted: len(surge.Submissions), Sent: res.Sent, Attempts: res.Attempts, Errors: res.Errors,
		Statuses: map[string]int{}, Expected: map[string]int{}, Accepted: sc.Accepted,
		Seconds: res.Elapsed.Seconds(), PerSecond: res.PerSecond(),
		P50Ms: float64(res.P50) / float64(time.Millisecond), P99Ms: float64(res.P99) / float64(time.Millisecond),
		Mix: map[string]int{}, Rate: o.Rate,
	}
	rep.Mode, rep.Connections = loadMode(o.LoadConfig)
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

// LoadSurge is the surge of a load run: o.Submissions drawn with o.Seed,
// for o.Campaign, its tokens signed by the campaign's providers. idpSecret
// and ciSecret are the simulated providers' secrets; empty, the demo's, as
// for `prereg sim idp`.
func LoadSurge(o LoadOptions, idpSecret, ciSecret string, now time.Time) (*sim.Surge, error) {
	var c *campaign.Campaign
	var err error
	if o.Campaign == "demo" {
		urls := map[string]string{}
		for _, name := range strings.Split(o.Providers, ",") {
			if name = strings.TrimSpace(name); name != "" {
				urls[name] = "http://127.0.0.1:9101" // not called: the load generator only issues tokens
			}
		}
		if c, err = sim.DemoCampaign(now, urls, nil); err != nil {
			return nil, err
		}
	} else if c, err = campaign.LoadFile(o.Campaign); err != nil {
		return nil, err
	}
	idps := map[string]*sim.IdP{}
	for _, p := range c.Providers {
		idps[p.Name] = sim.ConfiguredIdP(p.Name, idpSecret, ciSecret)
	}
	pop, err := sim.NewPopulation(o.Seed, sim.PeopleFor(o.Submissions, c, now), c.Cohort)
	if err != nil {
		return nil, err
	}
	return sim.NewSurge(pop, sim.SurgeConfig{Submissions: o.Submissions, Seed: o.Seed, Campaign: c, Providers: idps, Now: now})
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
