package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

func init() {
	register(command{name: "loadgen", summary: "send the synthetic surge to a running intake, or --dump it as JSON lines for vegeta/wrk", run: cmdLoadgen})
}

func cmdLoadgen(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "loadgen", "[--target URL] [--campaign demo|FILE] [--submissions N] [--seed S] [--rate R | --connections C] [--receipts FILE] [--dump FILE] [--format text|json]")
	target := fs.String("target", "http://127.0.0.1:8080", "base URL of a running intake (loopback only unless --allow-remote)")
	campaignArg := fs.String("campaign", "demo", `"demo" (the campaign prereg dev loads) or a campaign file (YAML)`)
	providers := fs.String("providers", "pass,kakao", "with --campaign demo: the identity providers' names")
	submissions := fs.Int("submissions", 100_000, "submissions in the surge")
	seed := fs.Int64("seed", 1, "seed of the population and the surge")
	rate := fs.Float64("rate", 0, "open loop: submissions per second (default: closed loop)")
	connections := fs.Int("connections", 0, "closed loop: concurrent connections (default 64)")
	duration := fs.Duration("duration", 10*time.Minute, "stop sending after this long")
	receipts := fs.String("receipts", "", "write every 202's submission number and receipt as JSON lines {seq, receipt} to FILE (no personal data), for matching against decisions")
	dump := fs.String("dump", "", `write the requests as JSON lines {method, url, path, headers, body} to FILE ("-" for stdout) instead of sending them`)
	allowRemote := fs.Bool("allow-remote", false, "allow a target that is not a loopback address")
	format := fs.String("format", "text", "output: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["rate"] && set["connections"]:
		return usagef("--rate (open loop) and --connections (closed loop) exclude each other")
	case *rate < 0 || *connections < 0 || *submissions < 1 || *duration <= 0:
		return usagef("--rate, --connections, --submissions and --duration must be positive")
	case *format != "text" && *format != "json":
		return usagef("--format must be text or json")
	case *submissions > 10_000_000:
		return usagef("--submissions: at most 10,000,000 (the surge is held in memory)")
	}

	now := time.Now()
	c, idps, err := loadgenWorld(env, *campaignArg, *providers, now)
	if err != nil {
		return err
	}
	pop, err := sim.NewPopulation(*seed, sim.PeopleFor(*submissions, c, now), c.Cohort)
	if err != nil {
		return err
	}
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: *submissions, Seed: *seed, Campaign: c, Providers: idps, Now: now})
	if err != nil {
		return err
	}

	if *dump != "" {
		return writeDumpFile(env, *dump, surge, *target)
	}

	cfg := sim.LoadConfig{Target: *target, Rate: *rate, Connections: *connections, Duration: *duration, AllowRemote: *allowRemote}
	if *format == "text" {
		conns := *connections
		if conns == 0 {
			conns = 64
		}
		mode := fmt.Sprintf("closed loop, %d connections", conns)
		if *rate > 0 {
			mode = fmt.Sprintf("open loop at %.0f/s", *rate)
		}
		fmt.Fprintf(env.Stdout, "loadgen: %d submissions (seed %d, campaign %s) to %s, %s\n", *submissions, *seed, c.ID, *target, mode)
	}
	res, err := sim.RunLoad(ctx, surge.Submissions, cfg)
	if err != nil {
		return err
	}
	if *receipts != "" {
		if err := writeReceiptsFile(*receipts, res.Answers); err != nil {
			return err
		}
	}
	rep := world.SummarizeLoad(surge, res, *target, *seed, cfg)
	if *format == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printLoadgen(env.Stdout, rep)
	return nil
}

// loadgenWorld is the campaign the surge is for and the providers that
// sign its tokens: the demo's secrets unless PREREG_SIM_IDP_SECRET and
// PREREG_SIM_CI_SECRET (or _FILE) say otherwise, as for `prereg sim idp`.
func loadgenWorld(env *Env, arg, providers string, now time.Time) (*campaign.Campaign, map[string]*sim.IdP, error) {
	var c *campaign.Campaign
	var err error
	if arg == "demo" {
		urls := map[string]string{}
		for _, name := range strings.Split(providers, ",") {
			if name = strings.TrimSpace(name); name != "" {
				urls[name] = "http://127.0.0.1:9101" // not called: the load generator only issues tokens
			}
		}
		if c, err = sim.DemoCampaign(now, urls, nil); err != nil {
			return nil, nil, usagef("%v", err)
		}
	} else if c, err = campaign.LoadFile(arg); err != nil {
		return nil, nil, campaignError(err)
	}
	secret, err := config.Secret(env.Getenv, "PREREG_SIM_IDP_SECRET")
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	ci, err := config.Secret(env.Getenv, "PREREG_SIM_CI_SECRET")
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	idps := map[string]*sim.IdP{}
	for _, p := range c.Providers {
		tokenSecret, ciSecret := sim.DemoTokenSecret(p.Name), sim.DemoCISecret
		if secret != "" {
			tokenSecret = []byte(secret)
		}
		if ci != "" {
			ciSecret = []byte(ci)
		}
		idps[p.Name] = sim.NewIdP(p.Name, tokenSecret, ciSecret)
	}
	return c, idps, nil
}

func writeDumpFile(env *Env, path string, surge *sim.Surge, target string) error {
	var w io.Writer = env.Stdout
	var f *os.File
	if path != "-" {
		var err error
		if f, err = os.Create(path); err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := sim.WriteDump(bw, surge.Submissions, target); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		fmt.Fprintf(env.Stderr, "loadgen: wrote %d requests to %s\n", len(surge.Submissions), path)
	}
	return nil
}

// writeReceiptsFile writes the receipts of the 202s to path.
func writeReceiptsFile(path string, answers []sim.Answer) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	bw := bufio.NewWriter(f)
	if _, err := sim.WriteReceipts(bw, answers); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("receipts: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	return nil
}

func printLoadgen(w io.Writer, r world.LoadReport) {
	fmt.Fprintf(w, "  sent %d of %d in %.1fs (%.0f/s), %d requests with retries, %d transport errors\n",
		r.Sent, r.Submitted, r.Seconds, r.PerSecond, r.Attempts, r.Errors)
	fmt.Fprintf(w, "  latency p50 %.1f ms, p99 %.1f ms\n", r.P50Ms, r.P99Ms)
	fmt.Fprintf(w, "  %-8s %10s %10s\n", "status", "answered", "expected")
	keys := map[string]bool{}
	for k := range r.Statuses {
		keys[k] = true
	}
	for k := range r.Expected {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		fmt.Fprintf(w, "  %-8s %10d %10d\n", k, r.Statuses[k], r.Expected[k])
	}
	fmt.Fprintf(w, "  %d distinct receipts; %d answers differ from the truth's expectation\n", r.Accepted, r.Mismatches)
}
