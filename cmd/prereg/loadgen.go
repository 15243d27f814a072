package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

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
	format := formatFlag(fs)
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
	case *submissions > 10_000_000:
		return usagef("--submissions: at most 10,000,000 (the surge is held in memory)")
	}

	idpSecret, ciSecret, err := simSecrets(env)
	if err != nil {
		return err
	}
	surge, err := world.LoadSurge(*campaignArg, *providers, idpSecret, ciSecret, *submissions, *seed, time.Now())
	if err != nil {
		return campaignError(err)
	}

	if *dump != "" {
		if err := writeFile(env, *dump, func(w io.Writer) error { return sim.WriteDump(w, surge.Submissions, *target) }); err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		if *dump != "-" {
			fmt.Fprintf(env.Stderr, "loadgen: wrote %d requests to %s\n", len(surge.Submissions), *dump)
		}
		return nil
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
		fmt.Fprintf(env.Stdout, "loadgen: %d submissions (seed %d, campaign %s) to %s, %s\n", *submissions, *seed, surge.Campaign.ID, *target, mode)
	}
	res, err := sim.RunLoad(ctx, surge.Submissions, cfg)
	if err != nil {
		return err
	}
	if *receipts != "" {
		if err := writeFile(env, *receipts, func(w io.Writer) error { _, err := sim.WriteReceipts(w, res.Answers); return err }); err != nil {
			return fmt.Errorf("receipts: %w", err)
		}
	}
	rep := world.SummarizeLoad(surge, res, *target, *seed, cfg)
	return writeOutput(env, *format, rep, rep.Print)
}
