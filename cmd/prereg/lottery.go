package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

func init() {
	register(command{name: "lottery commit", summary: "commit a window's lottery seed now and print its hash (the admin role commits it when the window opens)", run: cmdLotteryCommit})
	register(command{name: "lottery show", summary: "list a campaign's lottery commitments (hash; seed once revealed)", run: cmdLotteryShow})
}

func cmdLotteryCommit(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "lottery commit", "--campaign C --window W [--format text|json]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	window := fs.String("window", "", "window id (required)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args, "campaign", "window"); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	var cm scheduler.Commitment
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "lottery.commit", "campaign="+*campaignID+" window="+*window, func() (err error) {
		cm, err = scheduler.New(&postgres.AllocationStore{Pool: pool}, scheduler.Config{Logger: env.Logger}).CommitSeed(ctx, *campaignID, *window)
		return err
	})
	if err != nil {
		return err
	}
	if *format == "json" {
		return json.NewEncoder(env.Stdout).Encode(cm)
	}
	fmt.Fprintf(env.Stdout, "lottery seed of %s/%s committed at %s\nsha256: %s\n", cm.Campaign, cm.Window, cm.CommittedAt.UTC().Format(time.RFC3339), cm.Hash)
	return nil
}

func cmdLotteryShow(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "lottery show", "--campaign C [--format text|json]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args, "campaign"); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	list, err := (&postgres.AllocationStore{Pool: pool}).SeedCommitments(ctx, *campaignID)
	if err != nil {
		return err
	}
	if *format == "json" {
		return json.NewEncoder(env.Stdout).Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(env.Stdout, "no lottery seed committed for %s\n", *campaignID)
	}
	for _, c := range list {
		fmt.Fprintf(env.Stdout, "%-10s committed %s  sha256 %s\n", c.Window, c.CommittedAt.UTC().Format(time.RFC3339), c.Hash)
		if c.Seed != "" {
			fmt.Fprintf(env.Stdout, "%-10s revealed  %s  seed   %s\n", "", c.RevealedAt.UTC().Format(time.RFC3339), c.Seed)
		}
	}
	return nil
}

// commitOpenWindows commits the lottery seed of the campaign's windows
// open now, at `campaign load`, and prints their hashes.
func commitOpenWindows(ctx context.Context, env *Env, pool *pgxpool.Pool, campaignID string) error {
	cms, err := scheduler.New(&postgres.AllocationStore{Pool: pool}, scheduler.Config{Logger: env.Logger}).CommitOpenWindows(ctx, campaignID)
	for _, cm := range cms {
		fmt.Fprintf(env.Stdout, "lottery seed of open window %s committed at %s, sha256 %s\n", cm.Window, cm.CommittedAt.UTC().Format(time.RFC3339), cm.Hash)
	}
	return err
}
