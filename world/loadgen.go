package world

import (
	"fmt"
	"time"

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
