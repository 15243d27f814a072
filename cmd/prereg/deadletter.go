package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

func init() {
	register(command{name: "deadletter list", summary: "messages a stage could not decide, recorded before they were terminated", run: cmdDeadLetterList})
	register(command{name: "deadletter redrive", summary: "publish a verified-stream dead letter again (after loading its campaign, say)", run: cmdDeadLetterRedrive})
}

func cmdDeadLetterList(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "deadletter list", "[--stream S] [--limit N] [--format text|json]")
	streamName := fs.String("stream", "", "one stream: "+stream.Submitted+" or "+stream.Verified+" (default: both)")
	limit := fs.Int("limit", 100, "at most this many, newest first")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *streamName != "" && *streamName != stream.Submitted && *streamName != stream.Verified {
		return usagef("--stream %q: want %s or %s", *streamName, stream.Submitted, stream.Verified)
	}
	if *limit <= 0 {
		return usagef("--limit must be positive")
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	letters, err := (&postgres.DeadLetterStore{Pool: pool}).List(ctx, *streamName, *limit)
	if err != nil {
		return err
	}
	if *format == "json" {
		return json.NewEncoder(env.Stdout).Encode(letters)
	}
	if len(letters) == 0 {
		fmt.Fprintln(env.Stdout, "no dead letters")
		return nil
	}
	for _, l := range letters {
		state := "not re-driven"
		if l.RedrivenAt != nil {
			state = "re-driven " + l.RedrivenAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(env.Stdout, "%d  %s  %s seq %d  receipt %q  %s: %s  (%d bytes, first seen %s, %s)\n",
			l.ID, l.Stream, l.Subject, l.StreamSeq, l.MsgID, l.Reason, l.Detail, l.PayloadLen, l.FirstSeenAt.Format(time.RFC3339), state)
	}
	return nil
}

func cmdDeadLetterRedrive(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "deadletter redrive", "--id N")
	id := fs.Int64("id", 0, "the dead letter to publish again")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *id <= 0 {
		return usagef("--id N is required")
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	nc, closeNATS, err := env.NATS(ctx, false)
	if err != nil {
		return err
	}
	defer closeNATS()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var l deadletter.Letter
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "deadletter.redrive", fmt.Sprintf("dead_letter=%d", *id), func() (err error) {
		l, err = deadletter.Redrive(ctx, &postgres.DeadLetterStore{Pool: pool}, js, *id, time.Now())
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "dead letter %d: published again to %s; dedupe decides it\n", l.ID, l.Subject)
	return nil
}
