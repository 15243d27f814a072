package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

func init() {
	register(command{name: "lottery publish", summary: "write a window's lottery round file (seed, frozen input, assignments) for anyone to verify", run: cmdLotteryPublish})
	register(command{name: "lottery verify", summary: "check a published lottery round from its file alone; exit 3 on the first mismatch", run: cmdLotteryVerify})
}

func cmdLotteryPublish(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "lottery publish", "--campaign C --window W --out DIR")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	window := fs.String("window", "", "window id (required)")
	out := fs.String("out", "", "directory to write the round file into (required)")
	if err := parseFlags(fs, args, "campaign", "window", "out"); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	f, err := scheduler.New(&postgres.AllocationStore{Pool: pool}, scheduler.Config{Logger: env.Logger}).PublishRound(ctx, *campaignID, *window)
	if err != nil {
		return err
	}
	path, err := scheduler.WriteRoundFile(*out, &f)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: %d registrations, input sha256 %s", path, len(f.Input), f.InputHash)
	if f.Run == 0 {
		fmt.Fprintf(env.Stdout, "; not drawn yet\n")
		return nil
	}
	fmt.Fprintf(env.Stdout, "; run %d: %d assigned, %d unassigned, %d excluded\n", f.Run, len(f.Assignments), len(f.Unassigned), len(f.Excluded))
	return nil
}

func cmdLotteryVerify(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "lottery verify", "--campaign C --window W [--dir DIR]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	window := fs.String("window", "", "window id (required)")
	dir := fs.String("dir", ".", "directory holding the published round file")
	if err := parseFlags(fs, args, "campaign", "window"); err != nil {
		return err
	}
	f, err := scheduler.ReadRoundFile(*dir, *campaignID, *window)
	if err != nil {
		return err
	}
	var mm *scheduler.MismatchError
	if err := scheduler.VerifyRound(f); errors.As(err, &mm) {
		return &invariantError{names: []string{"lottery round " + *campaignID + "/" + *window + ": " + mm.What}}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "lottery round %s/%s verified: seed matches its commitment, input (%d registrations) its hash, all %d assignments and %d unassigned recomputed\n",
		*campaignID, *window, len(f.Input), len(f.Assignments), len(f.Unassigned))
	return nil
}
