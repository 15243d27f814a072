package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
)

func init() {
	register(command{name: "campaign load", summary: "validate a campaign file (YAML) and load it", run: cmdCampaignLoad})
	register(command{name: "campaign validate", summary: "validate a campaign file without loading it", run: cmdCampaignValidate})
}

func cmdCampaignValidate(ctx context.Context, env *Env, args []string) error {
	path, c, err := campaignArg(env, "campaign validate", args)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: valid: %d windows, %d providers, %d clinics\n", path, len(c.Windows), len(c.Providers), len(c.Clinics))
	return nil
}

func cmdCampaignLoad(ctx context.Context, env *Env, args []string) error {
	_, c, err := campaignArg(env, "campaign load", args)
	if err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	var res postgres.LoadResult
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "campaign.load", "campaign="+c.ID, func() (err error) {
		res, err = (&postgres.CampaignStore{Pool: pool}).Load(ctx, c)
		return err
	})
	if err != nil {
		return err
	}
	verb := "updated"
	if res.Created {
		verb = "created"
	}
	fmt.Fprintf(env.Stdout, "campaign %s %s: %d windows, %d providers, %d clinics, %d slots\n", c.ID, verb, len(c.Windows), len(c.Providers), res.Clinics, res.Slots)
	return commitOpenWindows(ctx, env, pool, c.ID)
}

// campaignArg reads the one FILE argument of a campaign command and
// validates the file.
func campaignArg(env *Env, name string, args []string) (string, *campaign.Campaign, error) {
	fs := newFlags(env, name, "FILE")
	if err := fs.Parse(args); err != nil {
		return "", nil, usagef("%v", err)
	}
	if fs.NArg() != 1 {
		return "", nil, usagef("want one campaign file (see docs/CAMPAIGN.md)")
	}
	c, err := campaign.LoadFile(fs.Arg(0))
	if err != nil {
		return "", nil, campaignError(err)
	}
	return fs.Arg(0), c, nil
}

// campaignError makes an invalid file a usage error (exit 2): the input
// is wrong, not the system.
func campaignError(err error) error {
	var ve *campaign.ValidationError
	if errors.As(err, &ve) {
		return &usageError{msg: ve.Error()}
	}
	return err
}
