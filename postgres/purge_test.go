package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/check"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// Every column of every table, after every migration, is classified for
// the purge (plain, pseudonymous, erased or re-pseudonymised) in the one
// list postgres/purge.go keeps, and that list names no column that is
// gone. A new column fails here until someone says what it holds.
func TestPurgeClassifiesEveryColumn(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(context.Background(), `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`)
	require.NoError(t, err)
	type col struct{ Table, Column string }
	cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[col])
	require.NoError(t, err)
	require.NotEmpty(t, cols)

	classes := postgres.PurgeClasses()
	seen := map[col]bool{}
	for _, c := range cols {
		seen[c] = true
		_, ok := classes[c.Table][c.Column]
		require.True(t, ok, "column %s.%s is not classified in postgres/purge.go (purgeSchema): say whether it is plain, pseudonymous, erased or re-pseudonymised by a purge", c.Table, c.Column)
	}
	for table, cs := range classes {
		for c := range cs {
			require.True(t, seen[col{table, c}], "postgres/purge.go classifies %s.%s, which the schema does not have", table, c)
		}
	}
}

// A purge refuses while an SMS is still to be sent, a held submission
// awaits review or the retention period runs; then it leaves no sealed
// phone, birth date, address key, nor any identity or device keyed hash
// of the campaign, the report renders with the same figures, a second
// purge changes nothing, and the campaign takes no new SMS or run.
func TestPurgeCampaign(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pool := db.Pool
	statusCampaign(t, pool)
	reg := statusRegister(t, pool, "r1", "aaaa")
	statusExec(t, pool, `UPDATE registrations SET device_key = 'dddd' WHERE id = $1`, reg)
	statusExec(t, pool, `INSERT INTO device_people (campaign, window_id, device_key, identity_key, rank, first_receipt)
		VALUES ('status-test', 'd9', 'dddd', 'aaaa', 1, 'r1'), ('status-test', 'd9', 'dddd', 'bbbb', 2, 'r3')`)
	statusDecide(t, pool, "r2", "duplicate", "same_device", &reg, nil)
	statusExec(t, pool, `UPDATE decisions SET identity_key = 'aaaa', device_key = 'dddd', addr_key = 'ffff' WHERE receipt IN ('r1', 'r2')`)
	statusExec(t, pool, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key,
		device_key, addr_key, birthdate, region, phone_kid, phone_enc, received_at)
		VALUES ('status-test', 'r3', 1, 'd9', 'held', 'device_cap', 'pass', 'bbbb', 'dddd', 'eeee', '1991-01-09', '11680', 'k', '\x01', now())`)
	statusAppoint(t, pool, reg, "scheduled", "pending")
	statusExec(t, pool, `INSERT INTO dead_letters (stream, subject, stream_seq, msg_id, reason, payload, payload_sha256, payload_len, first_seen_at)
		VALUES ('INTENTS_VERIFIED', 'intents.verified.1', 7, 'r9', 'undecodable', convert_to('{"receipt":"r9","campaign":"status-test","phone":{}}', 'UTF8'), sha256('x'), 10, now())`)

	store := &postgres.PurgeStore{Pool: pool}
	now := time.Now()
	later := now.Add(31 * 24 * time.Hour)
	opts := postgres.PurgeOptions{Retention: 30 * 24 * time.Hour, Now: now}

	_, err := store.Purge(ctx, "no-such-campaign", opts)
	require.ErrorIs(t, err, prereg.ErrCampaignNotFound)

	_, err = store.Purge(ctx, "status-test", opts)
	var refused *postgres.PurgeRefusedError
	require.ErrorAs(t, err, &refused, "a campaign with a pending SMS, a held submission and a recent decision is refused")
	require.ErrorIs(t, err, prereg.ErrConflict)
	require.Len(t, refused.Reasons, 3, "pending SMS, held review, retention: %v", refused.Reasons)
	opts.DryRun = true
	refusedDry, err := store.Purge(ctx, "status-test", opts)
	require.ErrorAs(t, err, &refused, "a dry run says it would be refused")
	require.NotEmpty(t, refusedDry.Tables, "and counts all the same")
	opts.DryRun = false

	statusExec(t, pool, `UPDATE outbox SET state = 'delivered', sent_at = now(), delivered_at = now() WHERE campaign = 'status-test'`)
	statusExec(t, pool, `UPDATE decisions SET review = 'rejected', reviewed_by = 'admin:operator', reviewed_at = now() WHERE receipt = 'r3'`)
	_, err = store.Purge(ctx, "status-test", opts)
	require.ErrorAs(t, err, &refused)
	require.Len(t, refused.Reasons, 1, "only the retention period is left: %v", refused.Reasons)
	require.Contains(t, refused.Reasons[0], "retention")

	reportJSON := func() []byte {
		rep, err := (&postgres.DedupeStore{Pool: pool}).DedupeReport(ctx, "status-test", "", 10, now)
		require.NoError(t, err)
		var html bytes.Buffer
		require.NoError(t, rep.Write(&html, dedupe.FormatHTML), "the report renders")
		for i := range rep.TopDevices {
			rep.TopDevices[i].Device = "" // re-pseudonymised
		}
		b, err := json.Marshal(rep)
		require.NoError(t, err)
		return b
	}
	before := reportJSON()
	checkBefore, err := check.Run(ctx, pool, "status-test", check.Options{})
	require.NoError(t, err)
	personal := func() (n int64) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM registrations WHERE phone_enc IS NOT NULL OR phone_kid IS NOT NULL OR birthdate IS NOT NULL
				OR left(identity_key, 1) <> 'p' OR left(device_key, 1) <> 'p') +
			(SELECT count(*) FROM decisions WHERE phone_enc IS NOT NULL OR addr_key IS NOT NULL OR birthdate IS NOT NULL
				OR left(identity_key, 1) <> 'p' OR left(device_key, 1) <> 'p') +
			(SELECT count(*) FROM device_people WHERE left(identity_key, 1) <> 'p' OR left(device_key, 1) <> 'p') +
			(SELECT count(*) FROM dead_letters WHERE payload IS NOT NULL)`).Scan(&n))
		return n
	}
	require.NotZero(t, personal())

	opts.Now = later
	opts.DryRun = true
	dry, err := store.Purge(ctx, "status-test", opts)
	require.NoError(t, err)
	require.True(t, dry.DryRun)
	require.Nil(t, dry.PurgedAt)
	counts := map[string]int64{}
	for _, c := range dry.Tables {
		counts[c.Table] = c.Rows
	}
	require.Equal(t, map[string]int64{"registrations": 1, "decisions": 3, "device_people": 2, "phone_people": 0, "cancellations": 0, "clinic_changes": 0, "outbox": 0, "delivery_reports": 0, "dead_letters": 1}, counts)
	n := personal()
	require.NotZero(t, n, "a dry run changes nothing")

	opts.DryRun = false
	var progress []string
	opts.Progress = func(c postgres.PurgeCount) { progress = append(progress, c.Table) }
	res, err := store.Purge(ctx, "status-test", opts)
	require.NoError(t, err)
	require.Equal(t, dry.Tables, res.Tables, "the purge changes what the dry run counted")
	require.Len(t, progress, len(res.Tables))
	require.NotNil(t, res.PurgedAt)
	require.Zero(t, personal(), "no phone, birth date, address key, identity or device keyed hash is left")
	require.JSONEq(t, string(before), string(reportJSON()), "the report's figures are the same after the purge")
	checkAfter, err := check.Run(ctx, pool, "status-test", check.Options{})
	require.NoError(t, err, "the invariants still run on a purged campaign")
	require.Equal(t, checkBefore.Failed(), checkAfter.Failed(), "and find what they found before")

	var linked int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM decisions d JOIN registrations r ON r.id = d.registration_id
		WHERE d.identity_key = r.identity_key AND d.device_key = r.device_key`).Scan(&linked))
	require.EqualValues(t, 2, linked, "a person's rows stay linked within the campaign")

	view, err := (&postgres.DedupeStore{Pool: pool}).ReceiptView(ctx, "r1")
	require.NoError(t, err, "the receipt view still reads a purged submission")
	require.True(t, view.Purged)
	require.Equal(t, "c1", view.Appointment.Clinic)

	again, err := store.Purge(ctx, "status-test", opts)
	require.NoError(t, err)
	require.Zero(t, again.Rows(), "a second purge finds nothing left")
	require.Equal(t, res.PurgedAt.UTC(), again.PurgedAt.UTC(), "and keeps the first purge's record")

	var appt int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM appointments WHERE registration_id = $1`, reg).Scan(&appt))
	_, err = (&postgres.OutboxStore{Pool: pool}).Resend(ctx, notify.ResendRequest{Appointment: appt, RequestedBy: "test"})
	require.Error(t, err, "a purged campaign has no phone to resend to")
	require.True(t, errors.Is(err, prereg.ErrConflict), "%v", err)
}

// An early purge (a cancelled campaign, a rehearsal) lifts the retention
// rule and no other: it still refuses while an SMS is pending, and
// without it the retention refusal stands. It purges, cancels the
// appointments still to come and gives their slots back, keeps its
// reason, and the citizen's lookup and the receipt view of a purged
// receipt answer "cancelled" rather than fail.
func TestPurgeEarly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pool := db.Pool
	statusCampaign(t, pool)
	reg := statusRegister(t, pool, "r1", "aaaa")
	statusAppoint(t, pool, reg, "scheduled", "pending")
	statusExec(t, pool, `UPDATE slots SET used = 1 WHERE campaign = 'status-test' AND clinic = 'c1' AND day = '2021-08-27' AND band = 1`)
	store := &postgres.PurgeStore{Pool: pool}
	// A week before the appointment's day: it is still to come.
	now := time.Date(2021, 8, 20, 0, 0, 0, 0, time.UTC)
	early := postgres.PurgeOptions{Retention: 30 * 24 * time.Hour, Now: now, Early: "rehearsal campaign"}
	normal := early
	normal.Early = ""

	_, err := store.Purge(ctx, "status-test", early)
	var refused *postgres.PurgeRefusedError
	require.ErrorAs(t, err, &refused, "an early purge still waits for a pending SMS")
	require.Len(t, refused.Reasons, 1, "and for nothing else: %v", refused.Reasons)
	require.Contains(t, refused.Reasons[0], "SMS still to be sent")

	statusExec(t, pool, `UPDATE outbox SET state = 'delivered', sent_at = now() - interval '3 days', delivered_at = now() WHERE campaign = 'status-test'`)
	inWindow := early
	inWindow.Now = time.Date(2021, 8, 10, 0, 0, 0, 0, time.UTC)
	_, err = store.Purge(ctx, "status-test", inWindow)
	require.ErrorAs(t, err, &refused, "an early purge refuses while a window takes submissions")
	require.Len(t, refused.Reasons, 1, "%v", refused.Reasons)
	require.Contains(t, refused.Reasons[0], "pause the campaign's intake first")
	beforeOpen := early
	beforeOpen.Now = time.Date(2021, 8, 1, 0, 0, 0, 0, time.UTC)
	_, err = store.Purge(ctx, "status-test", beforeOpen)
	require.ErrorAs(t, err, &refused, "and before a window opens")
	require.Len(t, refused.Reasons, 1, "%v", refused.Reasons)
	require.Contains(t, refused.Reasons[0], "pause the campaign's intake first")
	require.NoError(t, (&postgres.PauseStore{Pool: pool}).Pause(ctx, intake.Pause{Campaign: "status-test", PausedAt: inWindow.Now.Add(-time.Hour), By: "test"}))
	inWindow.DryRun = true
	_, err = store.Purge(ctx, "status-test", inWindow)
	require.NoError(t, err, "paused until resumed, the window takes nothing more")
	_, err = (&postgres.PauseStore{Pool: pool}).Resume(ctx, "status-test")
	require.NoError(t, err)

	_, err = store.Purge(ctx, "status-test", normal)
	require.ErrorAs(t, err, &refused, "without --early the retention period stands")
	require.Len(t, refused.Reasons, 1, "%v", refused.Reasons)
	require.Contains(t, refused.Reasons[0], "within the retention period")

	for _, blank := range []string{" \t", strings.Repeat("x", postgres.MaxEarlyReason+1)} {
		bad := early
		bad.Early = blank
		_, err = store.Purge(ctx, "status-test", bad)
		require.Error(t, err, "an early purge needs a reason of 1 to %d bytes", postgres.MaxEarlyReason)
		require.NotErrorAs(t, err, &refused)
	}

	checkBefore, err := check.Run(ctx, pool, "status-test", check.Options{})
	require.NoError(t, err)
	dryOpts := early
	dryOpts.DryRun = true
	dry, err := store.Purge(ctx, "status-test", dryOpts)
	require.NoError(t, err, "the early dry run is not refused")
	require.EqualValues(t, 1, dry.Cancelled, "it counts the appointment still to come")
	require.NotZero(t, dry.Rows())

	res, err := store.Purge(ctx, "status-test", early)
	require.NoError(t, err)
	require.NotNil(t, res.PurgedAt)
	require.Equal(t, dry.Tables, res.Tables, "the purge changes what the dry run counted")
	require.EqualValues(t, 1, res.Cancelled)

	var (
		reason    string
		removed   map[string]int64
		status    string
		used      int
		phoneLeft bool
	)
	require.NoError(t, pool.QueryRow(ctx, `SELECT early_reason, removed FROM campaign_purges WHERE campaign = 'status-test'`).Scan(&reason, &removed))
	require.Equal(t, "rehearsal campaign", reason, "the purge's record keeps why it came early")
	require.EqualValues(t, 1, removed["appointments"])
	require.NoError(t, pool.QueryRow(ctx, `SELECT a.status, s.used, r.phone_enc IS NOT NULL FROM appointments a
		JOIN slots s USING (campaign, clinic, day, band) JOIN registrations r ON r.id = a.registration_id
		WHERE a.registration_id = $1`, reg).Scan(&status, &used, &phoneLeft))
	require.Equal(t, "cancelled", status, "an appointment still to come is cancelled")
	require.Zero(t, used, "and its slot given back")
	require.False(t, phoneLeft, "the phone is gone")
	checkAfter, err := check.Run(ctx, pool, "status-test", check.Options{})
	require.NoError(t, err)
	require.Equal(t, checkBefore.Failed(), checkAfter.Failed(), "the invariants find after the purge what they found before")

	d, err := (&postgres.StatusStore{Pool: pool}).Status(ctx, "r1")
	require.NoError(t, err, "the citizen's lookup of a purged receipt answers")
	require.Equal(t, prereg.StatusCancelled, d.Status)
	view, err := (&postgres.DedupeStore{Pool: pool}).ReceiptView(ctx, "r1")
	require.NoError(t, err, "the receipt view of a purged receipt answers")
	require.True(t, view.Purged)
	require.Equal(t, "cancelled", view.Appointment.Status)

	// A request would write the birth date it was asked with back into
	// the purged campaign: neither is recorded.
	requests := &postgres.RequestStore{Pool: pool}
	birth := time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC)
	require.ErrorIs(t, requests.Cancel(ctx, "r1", birth), intake.ErrPurged)
	require.ErrorIs(t, requests.Change(ctx, "r1", birth, "c1"), intake.ErrPurged)
	var requestsLeft int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM cancellations WHERE receipt = 'r1')
		+ (SELECT count(*) FROM clinic_changes WHERE receipt = 'r1')`).Scan(&requestsLeft))
	require.Zero(t, requestsLeft, "no request recorded on a purged campaign")

	again, err := store.Purge(ctx, "status-test", early)
	require.NoError(t, err)
	require.Zero(t, again.Rows(), "a second early purge finds nothing left")
	require.Zero(t, again.Cancelled)
}
