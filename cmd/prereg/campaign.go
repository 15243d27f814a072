package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
)

func init() {
	register(command{name: "campaign load", summary: "validate a campaign file (YAML) and load it", run: cmdCampaignLoad})
	register(command{name: "campaign validate", summary: "validate a campaign file without loading it", run: cmdCampaignValidate})
	register(command{name: "campaign purge", summary: "remove a finished campaign's personal data, keep its audit trail (--dry-run: count only; --early REASON: before the retention period ends)", run: cmdCampaignPurge})
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

func cmdCampaignPurge(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "campaign purge", "--campaign C [--dry-run] [--early REASON [--yes]] [--format text|json]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	dry := fs.Bool("dry-run", false, "count what would be removed, change nothing")
	early := fs.String("early", "", "purge before the retention period ends, and say why (a cancelled campaign, a rehearsal, a data-protection order); appointments still to come are cancelled")
	yes := fs.Bool("yes", false, "with --early: do not ask for confirmation (needed off a terminal)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args, "campaign"); err != nil {
		return err
	}
	earlySet := false
	fs.Visit(func(f *flag.Flag) { earlySet = earlySet || f.Name == "early" })
	reason := strings.TrimSpace(*early)
	switch {
	case earlySet && reason == "":
		return usagef("--early needs a reason: why the campaign cannot wait for its retention period")
	case len(reason) > postgres.MaxEarlyReason:
		return usagef("--early: a reason of at most %d bytes", postgres.MaxEarlyReason)
	case *yes && !earlySet:
		return usagef("--yes confirms an --early purge only")
	}
	if earlySet && !*dry && !*yes {
		if err := confirmEarlyPurge(env, *campaignID, reason); err != nil {
			return err
		}
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	opts := postgres.PurgeOptions{Retention: cfg.PurgeRetention, DryRun: *dry, Early: reason, Now: time.Now()}
	if *format == "text" {
		opts.Progress = func(c postgres.PurgeCount) {
			fmt.Fprintf(env.Stdout, "%-17s %8d rows  %v\n", c.Table, c.Rows, c.Columns)
		}
	}
	target := fmt.Sprintf("campaign=%s dry_run=%t", *campaignID, *dry)
	if earlySet {
		target += fmt.Sprintf(" early=%q", reason)
	}
	var res postgres.PurgeResult
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "campaign.purge", target, func() (err error) {
		res, err = (&postgres.PurgeStore{Pool: pool}).Purge(ctx, *campaignID, opts)
		return err
	})
	if errors.Is(err, prereg.ErrCampaignNotFound) {
		return fmt.Errorf("campaign %q is not loaded", *campaignID)
	}
	if err != nil {
		return err
	}
	return writeOutput(env, *format, res, func(w io.Writer) {
		verb := map[bool]string{true: "would change", false: "changed"}[*dry]
		fmt.Fprintf(w, "campaign %s: %s %d rows (last activity %s)\n", *campaignID, verb, res.Rows(), res.LastActivity.Format(time.RFC3339))
		if earlySet {
			verb = map[bool]string{true: "would cancel", false: "cancelled"}[*dry]
			fmt.Fprintf(w, "early purge (%s): %s %d appointments still to come\n", reason, verb, res.Cancelled)
		}
	})
}

// confirmEarlyPurge asks, on a terminal, for the campaign id before an
// early purge: it cannot be undone and cancels appointments. Off a
// terminal (a script, a pipe) nobody is there to answer, so --yes must
// say it.
func confirmEarlyPurge(env *Env, campaignID, reason string) error {
	in, ok := env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return usagef("--early asks for confirmation on a terminal; pass --yes to confirm without one")
	}
	fmt.Fprintf(env.Stderr, "Purge campaign %s's personal data now, before its retention period ends (%s)?\n"+
		"Its appointments still to come are cancelled and nobody can be told: this cannot be undone.\n"+
		"Type the campaign id to confirm: ", campaignID, reason)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("early purge not confirmed")
	}
	if strings.TrimSpace(line) != campaignID {
		return errors.New("early purge not confirmed: the campaign id did not match")
	}
	return nil
}
