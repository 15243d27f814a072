package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
)

func init() {
	register(command{name: "report dedupe", summary: "the auditor's dedupe report (text, json, csv, html)", run: cmdReportDedupe})
	register(command{name: "report receipt", summary: "what became of one submission: decision, reason, match, review, appointment, SMS (json, html)", run: cmdReportReceipt})
}

func cmdReportDedupe(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "report dedupe", "--campaign C [--window W] [--format text|json|csv|html] [--top N]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	window := fs.String("window", "", "one window only (default: all)")
	format := formatFlag(fs, dedupe.FormatText, dedupe.FormatJSON, dedupe.FormatCSV, dedupe.FormatHTML)
	top := fs.Int("top", 10, "devices with the most distinct people to list")
	if err := parseFlags(fs, args, "campaign"); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	rep, err := (&postgres.DedupeStore{Pool: pool}).DedupeReport(ctx, *campaignID, *window, *top, time.Now())
	if errors.Is(err, prereg.ErrCampaignNotFound) {
		return fmt.Errorf("campaign %q is not loaded (prereg campaign load FILE)", *campaignID)
	}
	if err != nil {
		return err
	}
	return rep.Write(env.Stdout, *format)
}

func cmdReportReceipt(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "report receipt", "--receipt R [--format json|html]")
	receipt := fs.String("receipt", "", "the submission's receipt (required)")
	format := formatFlag(fs, dedupe.FormatJSON, dedupe.FormatHTML)
	if err := parseFlags(fs, args, "receipt"); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	v, err := (&postgres.DedupeStore{Pool: pool}).ReceiptView(ctx, *receipt)
	if err != nil {
		return err
	}
	if *format == dedupe.FormatHTML {
		return v.WriteHTML(env.Stdout)
	}
	return writeOutput(env, "json", v, nil)
}
