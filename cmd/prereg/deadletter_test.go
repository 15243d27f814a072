package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// letter is a dead letter as a stage records it.
func letter(streamName string, seq uint64, msgID, reason string, payload []byte) deadletter.Letter {
	sum := sha256.Sum256(payload)
	l := deadletter.Letter{
		Stream: streamName, Subject: stream.VerifiedSubject(0), StreamSeq: seq, MsgID: msgID, Reason: reason,
		Detail: "stream: malformed message: invalid JSON at byte 1", PayloadSHA256: sum[:], PayloadLen: len(payload), FirstSeenAt: time.Now(),
	}
	if streamName == stream.Verified {
		l.Payload = payload
	} else {
		l.Subject = stream.SubmittedSubject(0)
	}
	return l
}

// dlCampaign loads a small campaign with nothing decided yet.
func dlCampaign(t *testing.T, db *pgtest.DB, id string) {
	t.Helper()
	c, err := campaign.Parse([]byte(`
id: `+id+`
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: all, opens: "2021-08-09 20:00", closes: "2021-08-21 18:00", catch_up: true}
providers:
  - {name: pass, url: "http://127.0.0.1:9"}
schedule: {start: 2021-08-26, days: 2, bands: ["09:00-12:00"]}
clinics:
  - {id: c1, name: Clinic one, region: "11680", lat: 37.5, lng: 127.0, capacity: 1}
`), "")
	require.NoError(t, err)
	_, err = (&postgres.CampaignStore{Pool: db.Pool}).Load(context.Background(), c)
	require.NoError(t, err)
}

// An undecided outcome recorded as a dead letter is accounted for:
// invariant 1 holds, and the report counts it.
func TestCheckCountsDeadLetterAsAccounted(t *testing.T) {
	t.Parallel()
	const id = "dl-check"
	db := pgtest.New(t)
	dlCampaign(t, db, id)
	js := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	data, err := json.Marshal(prereg.Outcome{Receipt: "r-poison", Campaign: id, Verdict: prereg.VerdictVerified, IdentityKey: "id-a", DecidedAt: time.Now()})
	require.NoError(t, err)
	_, err = js.JS.Publish(ctx, stream.VerifiedSubject(0), data)
	require.NoError(t, err)
	vars := map[string]string{"DATABASE_URL": db.URL, "NATS_URL": js.ClientURL()}
	code, out := runCLI(t, vars, "check", "--campaign", id, "--settled")
	require.Equal(t, exitInvariant, code, "without its dead letter the outcome is lost:\n%s", out)

	store := &postgres.DeadLetterStore{Pool: db.Pool}
	require.NoError(t, store.Record(ctx, letter(stream.Verified, 4, "r-poison", deadletter.ReasonNoCampaign, []byte("{}"))))
	code, out = runCLI(t, vars, "check", "--campaign", id, "--settled", "--format", "json")
	require.Equal(t, exitOK, code, out)
	var rep struct {
		DeadLetters int `json:"dead_letters"`
		InFlight    int `json:"in_flight"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 1, rep.DeadLetters)
	require.Zero(t, rep.InFlight)
}

// List both streams' letters; a verified one is published again to its
// subject and marked, once; a submitted one cannot be re-driven.
func TestDeadLetterListAndRedrive(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	js := streamtest.New(t, stream.Config{})
	ctx := context.Background()
	vars := map[string]string{"DATABASE_URL": db.URL, "NATS_URL": js.ClientURL()}
	code, out := runCLI(t, vars, "deadletter", "list")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "no dead letters")

	store := &postgres.DeadLetterStore{Pool: db.Pool}
	outcome := []byte(`{"receipt":"r-late","campaign":"c-late","verdict":"verified","identity_key":"id-c"}`)
	require.NoError(t, store.Record(ctx, letter(stream.Submitted, 3, "", deadletter.ReasonNoReceipt, []byte(`{"identity_token":"tok-secret"`))))
	require.NoError(t, store.Record(ctx, letter(stream.Verified, 9, "r-late", deadletter.ReasonNoCampaign, outcome)))
	code, out = runCLI(t, vars, "deadletter", "list", "--format", "json")
	require.Equal(t, exitOK, code, out)
	var listed []deadletter.Letter
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed, 2)
	require.NotContains(t, out, "tok-secret")
	require.NotContains(t, out, "id-c", "payloads are not listed")
	submitted, verified := listed[1], listed[0]
	require.Equal(t, stream.Submitted, submitted.Stream)
	require.Equal(t, "r-late", verified.MsgID)

	code, out = runCLI(t, vars, "deadletter", "list", "--stream", stream.Submitted)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, deadletter.ReasonNoReceipt)
	require.NotContains(t, out, "r-late")

	code, out = runCLI(t, vars, "deadletter", "redrive", "--id", itoa(submitted.ID))
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "cannot be re-driven")

	code, out = runCLI(t, vars, "deadletter", "redrive", "--id", itoa(verified.ID))
	require.Equal(t, exitOK, code, out)
	s, err := js.JS.Stream(ctx, stream.Verified)
	require.NoError(t, err)
	m, err := s.GetLastMsgForSubject(ctx, verified.Subject)
	require.NoError(t, err)
	require.Equal(t, outcome, m.Data)
	require.Equal(t, "r-late", m.Header.Get(jetstream.MsgIDHeader))

	code, out = runCLI(t, vars, "deadletter", "redrive", "--id", itoa(verified.ID))
	require.Equal(t, exitFailure, code, "re-driven once:\n%s", out)
	code, out = runCLI(t, vars, "deadletter", "list", "--stream", stream.Verified)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "re-driven 20")

	code, _ = runCLI(t, vars, "deadletter", "redrive")
	require.Equal(t, exitUsage, code)
	code, _ = runCLI(t, vars, "deadletter", "list", "--stream", "OTHER")
	require.Equal(t, exitUsage, code)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
