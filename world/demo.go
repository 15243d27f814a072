package world

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/check"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/sim"
)

// DemoSummary is the demo's result; its JSON keys are part of the
// outside contract (DESIGN.md).
type DemoSummary struct {
	Campaign    string         `json:"campaign"`
	Seed        int64          `json:"seed"`
	Submitted   int            `json:"submitted"`
	Accepted    int            `json:"accepted"`
	Statuses    map[string]int `json:"statuses"`
	Decisions   DemoDecisions  `json:"decisions"`
	InvariantOK bool           `json:"invariants_ok"`
	Violations  []string       `json:"violations"`

	Persons           int     `json:"persons"`
	PersonsRegistered int     `json:"persons_registered"`
	DedupePrecision   float64 `json:"dedupe_precision"`
	DedupeRecall      float64 `json:"dedupe_recall"`
	TruthMismatches   int     `json:"truth_mismatches"`
	// TruthExamples names the first mismatches by their place in the surge
	// and their class (never by personal data).
	TruthExamples []sim.Mismatch `json:"truth_examples,omitempty"`

	IDPCalls          int64   `json:"idp_calls"`
	IDPCallsPerPerson float64 `json:"idp_calls_per_person"`

	Appointments int `json:"appointments"`
	Unassigned   int `json:"unassigned"`
	SMSAttempts  int `json:"sms_attempts"`
	SMSDelivered int `json:"sms_delivered"`
	// SMSDuplicates counts deliveries beyond the first per appointment, at
	// the simulated handsets.
	SMSDuplicates int `json:"sms_duplicates"`

	// GroupCommit (--sync-always): intake's publishes, as atomic batches.
	GroupCommit *DemoGroupCommit `json:"group_commit,omitempty"`

	Seconds    DemoSeconds    `json:"seconds"`
	Throughput DemoThroughput `json:"throughput"`
	Database   string         `json:"database,omitempty"` // with --keep
}

// DemoGroupCommit is intake's group commit over the surge.
type DemoGroupCommit struct {
	Publishes int64 `json:"publishes"` // batches, and intents published alone
	Intents   int64 `json:"intents"`
}

// groupCommit reads intake's group-size histogram: how many publishes
// carried how many intents.
func groupCommit(reg prometheus.Gatherer) (*DemoGroupCommit, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	for _, mf := range mfs {
		if mf.GetName() == "prereg_intake_group_size" && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return &DemoGroupCommit{Publishes: int64(h.GetSampleCount()), Intents: int64(h.GetSampleSum())}, nil
		}
	}
	return nil, errors.New("no prereg_intake_group_size metric")
}

// DemoDecisions counts dedupe's decisions by kind.
type DemoDecisions struct {
	Registered int `json:"registered"`
	Duplicate  int `json:"duplicate"`
	Held       int `json:"held"`
	Rejected   int `json:"rejected"`
}

// DemoSeconds is the time each phase took.
type DemoSeconds struct {
	Intake   float64 `json:"intake"`
	Pipeline float64 `json:"pipeline"`
	Allocate float64 `json:"allocate"`
	Notify   float64 `json:"notify"`
	Total    float64 `json:"total"`
}

// DemoThroughput is the rates of the run.
type DemoThroughput struct {
	IntakePerS    float64 `json:"intake_per_s"`
	EndToEndPerS  float64 `json:"end_to_end_per_s"`
	IntakeP99Ms   float64 `json:"intake_p99_ms"`
	DecisionsPerS float64 `json:"decisions_per_s"`
}

// DemoOptions configure Demo: the world's connections and the surge.
type DemoOptions struct {
	Config      config.Config
	DatabaseURL string // see Options.DatabaseURL
	NATSURL     string // see Options.NATSURL
	Logger      *slog.Logger

	Submissions int
	Seed        int64
	Keep        bool
	Connections int
	Rate        float64
	SyncAlways  bool
	Progress    io.Writer // progress lines; nil: none
	// Client, when set, sends the surge (sim.LoadConfig.Client): a test
	// that must see every answer the surge received reads them through it.
	Client *http.Client
	// Inspect, when set, is called once the run is scored and before the
	// world is closed, so that a test can search everything the run left
	// behind (streams, tables, reports) in the world the demo built.
	Inspect func(ctx context.Context, w *World, s *sim.Surge) error
}

// Demo runs the whole pipeline on a fresh world and scores it.
func Demo(ctx context.Context, o DemoOptions) (*DemoSummary, error) {
	start := time.Now()
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	fmt.Fprintf(out, "prereg demo: %d submissions, seed %d\n", o.Submissions, o.Seed)
	w, err := Start(ctx, Options{
		Config:      o.Config,
		DatabaseURL: o.DatabaseURL,
		NATSURL:     o.NATSURL,
		Logger:      o.Logger,
		Keep:        o.Keep,
		Clinics:     max(300, o.Submissions/100),
		Submissions: o.Submissions,
		Seed:        o.Seed,
		Now:         start,
		SyncAlways:  o.SyncAlways,
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	c := w.Campaign
	sum := &DemoSummary{Campaign: c.ID, Seed: o.Seed, Statuses: map[string]int{}}
	if o.Keep {
		sum.Database = w.DB.URL
	}

	// The surge.
	pop, err := sim.NewPopulation(o.Seed, sim.PeopleFor(o.Submissions, c, start), c.Cohort)
	if err != nil {
		return nil, err
	}
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: o.Submissions, Seed: o.Seed, Campaign: c, Providers: w.IdPs, Now: start})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  world: %s database, %s, %d clinics, providers %v, SMS gateway, all roles in process\n",
		map[bool]string{true: "private-cluster", false: "PostgreSQL"}[w.DB.Server.Private()], natsKind(w), len(c.Clinics), ProviderNames)

	// Phase 1: the surge through the HTTP intake.
	fmt.Fprintf(out, "  1/4 intake: sending %d submissions to %s ...\n", len(surge.Submissions), w.BaseURL)
	t0 := time.Now()
	load, err := sim.RunLoad(ctx, surge.Submissions, sim.LoadConfig{Target: w.BaseURL, Connections: o.Connections, Rate: o.Rate, Client: o.Client})
	if err != nil {
		return nil, fmt.Errorf("surge: %w", err)
	}
	sum.Seconds.Intake = time.Since(t0).Seconds()
	sum.Submitted = len(surge.Submissions)
	receipts := map[string]bool{}
	for _, a := range load.Answers {
		sum.Statuses[fmt.Sprint(a.Status)]++
		if a.Status == 202 {
			receipts[a.Receipt] = true
		}
	}
	sum.Accepted = len(receipts)
	sum.Throughput.IntakePerS = round1(float64(load.Sent) / sum.Seconds.Intake)
	sum.Throughput.IntakeP99Ms = round1(float64(load.P99) / float64(time.Millisecond))
	fmt.Fprintf(out, "      %d answered in %.1fs (%.0f/s, p99 %.1f ms): %v\n", load.Sent, sum.Seconds.Intake, sum.Throughput.IntakePerS, sum.Throughput.IntakeP99Ms, sum.Statuses)
	if o.SyncAlways {
		if sum.GroupCommit, err = groupCommit(w.System.Registry()); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "      every write fsync'd: %d intents in %d publishes (group commit)\n", sum.GroupCommit.Intents, sum.GroupCommit.Publishes)
	}

	// Phase 2: wait until every accepted intent is decided.
	fmt.Fprintf(out, "  2/4 pipeline: verify and dedupe deciding %d accepted intents ...\n", sum.Accepted)
	decided, err := waitFor(ctx, "decisions", func(ctx context.Context) (int, error) {
		var k int
		err := w.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE campaign = $1`, c.ID).Scan(&k)
		return k, err
	}, sum.Accepted)
	sum.Seconds.Pipeline = time.Since(t0).Seconds() - sum.Seconds.Intake
	if err != nil {
		return nil, fmt.Errorf("pipeline: %d of %d decided: %w (%s)", decided, sum.Accepted, err, w.PipelineState(context.WithoutCancel(ctx)))
	}
	sum.Throughput.EndToEndPerS = round1(float64(sum.Accepted) / (sum.Seconds.Intake + sum.Seconds.Pipeline))
	sum.Throughput.DecisionsPerS = round1(float64(sum.Accepted) / (sum.Seconds.Intake + sum.Seconds.Pipeline))
	fmt.Fprintf(out, "      all decided %.1fs after the surge ended (%.0f/s from first 202 to last decision)\n", sum.Seconds.Pipeline, sum.Throughput.EndToEndPerS)

	// Phase 3: allocate every window that has registrations.
	fmt.Fprintf(out, "  3/4 allocation: lottery per window ...\n")
	t2 := time.Now()
	alloc := scheduler.New(&postgres.AllocationStore{Pool: w.Pool}, scheduler.Config{Logger: o.Logger})
	for _, win := range c.Windows {
		if _, err := alloc.CommitSeed(ctx, c.ID, win.ID); err != nil {
			return nil, err
		}
		res, err := alloc.Run(ctx, scheduler.Request{Campaign: c.ID, Window: win.ID, Policy: scheduler.PolicyLottery})
		if err != nil {
			return nil, fmt.Errorf("allocate %s: %w", win.ID, err)
		}
		sum.Appointments += res.Assigned
		sum.Unassigned += res.Unassigned
		if res.Registrations > 0 {
			fmt.Fprintf(out, "      window %s: %d registrations, %d assigned, %d unassigned\n", win.ID, res.Registrations, res.Assigned, res.Unassigned)
		}
	}
	sum.Seconds.Allocate = time.Since(t2).Seconds()

	// Phase 4: notify drains the outbox; delivery reports come back.
	fmt.Fprintf(out, "  4/4 notify: sending %d SMS through the simulated gateway ...\n", sum.Appointments)
	t3 := time.Now()
	_, err = waitFor(ctx, "delivery reports", func(ctx context.Context) (int, error) {
		oc, err := w.System.NotifyCounts(ctx, c.ID)
		return oc.Delivered + oc.Failed, err
	}, sum.Appointments)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	sum.Seconds.Notify = time.Since(t3).Seconds()
	gs := w.Gateway.Stats()
	sum.SMSAttempts, sum.SMSDelivered, sum.SMSDuplicates = gs.Attempts, gs.HandsetDeliveries, gs.HandsetDuplicates

	// The invariants, on a settled pipeline.
	rep, err := check.Run(ctx, w.Pool, c.ID, check.Options{JS: w.JS, Settled: true})
	if err != nil {
		return nil, err
	}
	sum.Violations = rep.Failed()

	// Against the truth: exact counts, precision and recall.
	var decisions []sim.Decision
	err = (&postgres.DedupeStore{Pool: w.Pool}).DedupeDecisions(ctx, c.ID, func(d postgres.ScoredDecision) error {
		decisions = append(decisions, sim.Decision{Receipt: d.Receipt, Kind: d.Kind, Reason: d.Reason, IdentityKey: d.IdentityKey, RegistrationID: d.RegistrationID})
		switch d.Kind {
		case prereg.KindRegistered:
			sum.Decisions.Registered++
		case prereg.KindDuplicate:
			sum.Decisions.Duplicate++
		case prereg.KindHeld:
			sum.Decisions.Held++
		case prereg.KindRejected:
			sum.Decisions.Rejected++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	score := surge.Truth().Score(load.Answers, decisions)
	sum.Persons, sum.PersonsRegistered = score.Persons, score.PersonsRegistered
	sum.DedupePrecision, sum.DedupeRecall = score.Precision, score.Recall
	sum.TruthMismatches = score.MismatchCount
	if !score.OK() {
		sum.Violations = append(sum.Violations, fmt.Sprintf("truth: %d mismatches against the synthetic truth (counts ok: %t, one per person: %t)", score.MismatchCount, score.CountsOK, score.OnePerPerson))
		for i, m := range score.Mismatches {
			if i == 5 {
				break
			}
			sum.TruthExamples = append(sum.TruthExamples, m)
			fmt.Fprintf(out, "      mismatch: submission %d (%s): %s\n", m.Seq, m.Class, m.Problem)
		}
	}
	if sum.SMSDuplicates > 0 {
		sum.Violations = append(sum.Violations, fmt.Sprintf("4 at most one SMS delivered per appointment: %d duplicates at the handsets", sum.SMSDuplicates))
	}
	for _, idp := range w.IdPs {
		sum.IDPCalls += idp.Calls()
	}
	if sum.Persons > 0 {
		sum.IDPCallsPerPerson = math.Round(float64(sum.IDPCalls)/float64(sum.Persons)*1000) / 1000
	}
	if sum.Violations == nil {
		sum.Violations = []string{}
	}
	sum.InvariantOK = len(sum.Violations) == 0
	sum.Seconds.Total = time.Since(start).Seconds()
	sum.Seconds = roundSeconds(sum.Seconds)
	if o.Inspect != nil {
		if err := o.Inspect(ctx, w, surge); err != nil {
			return sum, fmt.Errorf("inspect: %w", err)
		}
	}
	return sum, nil
}

// waitFor polls count until it reaches want, failing when it stops moving
// for a minute.
func waitFor(ctx context.Context, what string, count func(context.Context) (int, error), want int) (int, error) {
	last, lastMove := -1, time.Now()
	for {
		n, err := count(ctx)
		if err != nil {
			return n, err
		}
		if n >= want {
			return n, nil
		}
		if n != last {
			last, lastMove = n, time.Now()
		} else if time.Since(lastMove) > time.Minute {
			return n, fmt.Errorf("%s stuck at %d of %d for a minute", what, n, want)
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func natsKind(w *World) string {
	if w.Embedded != nil {
		return "embedded JetStream"
	}
	return "JetStream at NATS_URL"
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

func roundSeconds(s DemoSeconds) DemoSeconds {
	r := func(x float64) float64 { return math.Round(x*100) / 100 }
	return DemoSeconds{Intake: r(s.Intake), Pipeline: r(s.Pipeline), Allocate: r(s.Allocate), Notify: r(s.Notify), Total: r(s.Total)}
}

// PrintDemo writes the summary for people.
func PrintDemo(w io.Writer, s *DemoSummary) {
	fmt.Fprintf(w, "\nSummary (campaign %s, seed %d)\n", s.Campaign, s.Seed)
	fmt.Fprintf(w, "  submitted %d, accepted %d (statuses %v)\n", s.Submitted, s.Accepted, s.Statuses)
	fmt.Fprintf(w, "  decisions: %d registered, %d duplicate, %d held, %d rejected\n", s.Decisions.Registered, s.Decisions.Duplicate, s.Decisions.Held, s.Decisions.Rejected)
	fmt.Fprintf(w, "  people: %d to register, %d registered; dedupe precision %.4f, recall %.4f\n", s.Persons, s.PersonsRegistered, s.DedupePrecision, s.DedupeRecall)
	fmt.Fprintf(w, "  identity provider: %d calls, %.3f per person (Korea 2021: about 2.5)\n", s.IDPCalls, s.IDPCallsPerPerson)
	fmt.Fprintf(w, "  appointments %d, unassigned %d; SMS: %d attempts, %d delivered, %d duplicates at the handsets\n", s.Appointments, s.Unassigned, s.SMSAttempts, s.SMSDelivered, s.SMSDuplicates)
	fmt.Fprintf(w, "  seconds: intake %.1f, pipeline %.1f, allocate %.1f, notify %.1f, total %.1f\n", s.Seconds.Intake, s.Seconds.Pipeline, s.Seconds.Allocate, s.Seconds.Notify, s.Seconds.Total)
	fmt.Fprintf(w, "  throughput: intake %.0f/s (p99 %.1f ms), end to end %.0f/s\n", s.Throughput.IntakePerS, s.Throughput.IntakeP99Ms, s.Throughput.EndToEndPerS)
	if g := s.GroupCommit; g != nil {
		fmt.Fprintf(w, "  every intent fsync'd before its 202: %d intents in %d publishes (group commit)\n", g.Intents, g.Publishes)
	}
	if s.Database != "" {
		fmt.Fprintf(w, "  database kept: %s\n", s.Database)
	}
	if s.InvariantOK {
		fmt.Fprintln(w, "\nEvery invariant held: nothing lost, nothing doubled, one registration per person, no slot over capacity, one SMS per appointment.")
		return
	}
	fmt.Fprintln(w, "\nINVARIANTS FAILED:")
	for _, v := range s.Violations {
		fmt.Fprintf(w, "  - %s\n", v)
	}
}
