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
	var o world.LoadOptions
	o.Flags(fs)
	receipts := fs.String("receipts", "", "write every 202's submission number and receipt as JSON lines {seq, receipt} to FILE (no personal data), for matching against decisions")
	dump := fs.String("dump", "", `write the requests as JSON lines {method, url, path, headers, body} to FILE ("-" for stdout) instead of sending them`)
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["rate"] && set["connections"] {
		return usagef("--rate (open loop) and --connections (closed loop) exclude each other")
	}
	if err := o.Check(); err != nil {
		return usagef("%v", err)
	}

	idpSecret, ciSecret, err := simSecrets(env)
	if err != nil {
		return err
	}
	surge, err := world.LoadSurge(o, idpSecret, ciSecret, time.Now())
	if err != nil {
		return campaignError(err)
	}

	if *dump != "" {
		if err := writeFile(env, *dump, func(w io.Writer) error { return sim.WriteDump(w, surge.Submissions, o.Target) }); err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		if *dump != "-" {
			fmt.Fprintf(env.Stderr, "loadgen: wrote %d requests to %s\n", len(surge.Submissions), *dump)
		}
		return nil
	}

	if *format == "text" {
		world.PrintLoadStart(env.Stdout, surge, o)
	}
	res, err := sim.RunLoad(ctx, surge.Submissions, o.LoadConfig)
	if err != nil {
		return err
	}
	if *receipts != "" {
		if err := writeFile(env, *receipts, func(w io.Writer) error { _, err := sim.WriteReceipts(w, res.Answers); return err }); err != nil {
			return fmt.Errorf("receipts: %w", err)
		}
	}
	rep := world.SummarizeLoad(surge, res, o)
	return writeOutput(env, *format, rep, rep.Print)
}
