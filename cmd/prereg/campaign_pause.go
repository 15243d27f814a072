package main

import (
	"context"
	"time"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
)

func init() {
	register(command{name: "campaign pause", summary: "answer a campaign's submissions 503 paused on every intake within its refresh (5 s); --until reopens them", run: campaignPause("pause")})
	register(command{name: "campaign resume", summary: "take a paused campaign's submissions again", run: campaignPause("resume")})
}

// campaignPause pauses or resumes (verb) a campaign's intake, as the
// console does, recorded in the audit log.
func campaignPause(verb string) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		return cmdCampaignPause(ctx, env, verb, args)
	}
}

func cmdCampaignPause(ctx context.Context, env *Env, verb string, args []string) error {
	fs := newFlags(env, "campaign "+verb, "--campaign C [--until RFC3339]")
	id := fs.String("campaign", "", "the campaign")
	until := fs.String("until", "", "pause: when submissions reopen by themselves (default: when resumed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p := intake.Pause{Campaign: *id, PausedAt: time.Now().UTC(), By: "cli"}
	if at, err := time.Parse(time.RFC3339, *until); err == nil && at.After(p.PausedAt) {
		p.ReopensAt = &at
	} else if *until != "" || *id == "" {
		return usagef("want --campaign C, and --until a future RFC 3339 time")
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
