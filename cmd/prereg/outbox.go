package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
)

func init() {
	register(command{name: "outbox resend", summary: "send an appointment's SMS again: a new message version, recorded with who asked and why", run: cmdOutboxResend})
	register(command{name: "outbox status", summary: "the SMS outbox: pending, sent, delivered, failed, resends, unconfirmed sends", run: cmdOutboxStatus})
}

func cmdOutboxResend(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "outbox resend", "--appointment ID [--reason TEXT] [--by NAME]")
	appt := fs.Int64("appointment", 0, "the appointment whose SMS to send again")
	reason := fs.String("reason", "", "why, for the record")
	by := fs.String("by", "", "who asks (default: $USER)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *appt <= 0 {
		return usagef("--appointment ID is required")
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	var res notify.Resent
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "outbox.resend", fmt.Sprintf("appointment=%d", *appt), func() (err error) {
		res, err = (&postgres.OutboxStore{Pool: pool}).Resend(ctx, notify.ResendRequest{
			Appointment: *appt,
			RequestedBy: "cli:" + cmp.Or(*by, env.Getenv("USER"), "unknown"),
			Reason:      *reason,
		})
		return err
	})
	switch {
	case errors.Is(err, prereg.ErrNotFound):
		return fmt.Errorf("appointment %d not found", *appt)
	case err != nil:
		return err
	}
	fmt.Fprintf(env.Stdout, "appointment %d: version %d queued (outbox row %d); notify sends it with idempotency key %s\n",
		res.Appointment, res.Version, res.OutboxID, res.Key)
	return nil
}

func cmdOutboxStatus(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "outbox status", "[--campaign C] [--format text|json]")
	campaignID := fs.String("campaign", "", "one campaign (default: all)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	store := &postgres.OutboxStore{Pool: pool}
	c, err := store.Counts(ctx, *campaignID)
	if err != nil {
		return err
	}
	failed, err := store.Failed(ctx, *campaignID, 20)
	if err != nil {
		return err
	}
	if *format == "json" {
		return json.NewEncoder(env.Stdout).Encode(struct {
			postgres.OutboxCounts
			LatestFailed []postgres.FailedMessage `json:"latest_failed"`
		}{c, failed})
	}
	fmt.Fprintf(env.Stdout, "pending %d, sent %d, delivered %d, failed %d; operator resends %d\n", c.Pending, c.Sent, c.Delivered, c.Failed, c.Resends)
	if c.UnconfirmedSends > 0 {
		fmt.Fprintf(env.Stdout, "unconfirmed sends %d: messages resent after an unfinished attempt; a gateway without idempotency keys may have delivered each twice\n", c.UnconfirmedSends)
	}
	if len(failed) > 0 {
		fmt.Fprintln(env.Stdout, "latest permanent failures (resend with: prereg outbox resend --appointment ID):")
		for _, f := range failed {
			fmt.Fprintf(env.Stdout, "  appointment %d v%d after %d attempts: %s\n", f.Appointment, f.Version, f.Attempts, f.LastError)
		}
	}
	return nil
}
