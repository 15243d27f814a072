package main

import (
	"context"
	"time"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
)

func init() {
	summaries := map[string]string{
		"pause":  "answer a campaign's submissions 503 paused on every intake within its refresh (5 s); --until reopens them",
		"resume": "take a paused campaign's submissions again",
	}
	for verb, summary := range summaries {
		register(command{name: "campaign " + verb, summary: summary, run: func(ctx context.Context, env *Env, args []string) error {
			return cmdCampaignPause(ctx, env, verb, args)
		}})
	}
}

// cmdCampaignPause pauses or resumes (verb) a campaign's intake, as the
// console does, recorded in the audit log.
func cmdCampaignPause(ctx context.Context, env *Env, verb string, args []string) error {
	fs := newFlags(env, "campaign "+verb, "--campaign C [--until RFC3339]")
	id := fs.String("campaign", "", "the campaign")
	until := fs.String("until", "", "pause: when submissions reopen by themselves (default: when resumed)")
	if err := parseFlags(fs, args, "campaign"); err != nil {
		return err
	}
	p, err := intake.NewPause(*id, *until, "cli", time.Now())
	if err != nil {
		return usagef("--until: %v", err)
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	store := &postgres.PauseStore{Pool: pool}
	return (&postgres.AuditStore{Pool: pool}).Command(ctx, "intake."+verb, "campaign="+*id, func() error {
		if verb == "resume" {
			_, err := store.Resume(ctx, *id)
			return err
		}
		return store.Pause(ctx, p)
	})
}
