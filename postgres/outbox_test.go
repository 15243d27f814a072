package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/notify/notifytest"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

func seedOutbox(tb testing.TB, n int) (*pgtest.DB, *postgres.OutboxStore, *notifytest.Seeded) {
	tb.Helper()
	db := pgtest.New(tb)
	sealer, _, err := notifytest.NewSealer()
	require.NoError(tb, err)
	s, err := notifytest.Seed(context.Background(), db.Pool, notifytest.Config{N: n, Sealer: sealer})
	require.NoError(tb, err)
	return db, &postgres.OutboxStore{Pool: db.Pool}, s
}

func TestOutboxConcurrentClaimsAreDisjoint(t *testing.T) {
	t.Parallel()
	_, store, _ := seedOutbox(t, 60)
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		owner := string(rune('a' + w))
		wg.Go(func() {
			for {
				msgs, err := store.Claim(ctx, owner, now, now.Add(time.Minute), 4)
				if err != nil {
					t.Error(err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					if prev, dup := seen[m.ID]; dup {
						t.Errorf("row %d claimed by %s and %s", m.ID, prev, owner)
					}
					seen[m.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, 60)
}

func TestOutboxLeaseExpiryReclaimsAndCounts(t *testing.T) {
	t.Parallel()
	db, store, seeded := seedOutbox(t, 1)
	ctx := context.Background()
	now := time.Now()
	first, err := store.Claim(ctx, "dead", now, now.Add(time.Second), 10)
	require.NoError(t, err)
	require.Len(t, first, 1)
	require.False(t, first[0].Reclaimed)
	require.Equal(t, seeded.Keys[0], first[0].Key)
	require.Equal(t, "강남구보건소", first[0].Where.Clinic)
	require.Equal(t, seeded.Campaign.ID, first[0].Campaign)

	again, err := store.Claim(ctx, "other", now.Add(500*time.Millisecond), now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Empty(t, again, "a leased row is not due")

	later := now.Add(2 * time.Second)
	re, err := store.Claim(ctx, "alive", later, later.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, re, 1)
	require.True(t, re[0].Reclaimed, "the dead worker's attempt was unfinished")

	// The dead worker's late outcome is ignored; the new owner's counts.
	require.NoError(t, store.Complete(ctx, "dead", later, []notify.Result{{ID: re[0].ID, Outcome: notify.OutcomeFailed, Error: "late"}}))
	c, err := store.Counts(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, c.Pending)
	require.NoError(t, store.Complete(ctx, "alive", later, []notify.Result{{ID: re[0].ID, Outcome: notify.OutcomeSent, MessageID: "m1", Type: notify.TypeSMS}}))
	c, err = store.Counts(ctx, "")
	require.NoError(t, err)
	require.Equal(t, postgres.OutboxCounts{Sent: 1, UnconfirmedSends: 1}, c)
	var owner *string
	var attempts int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT lease_owner, attempts FROM outbox`).Scan(&owner, &attempts))
	require.Nil(t, owner)
	require.Equal(t, 1, attempts)
}

// TestOutboxLeaseIsHOT holds the claim to an update PostgreSQL can make
// without writing an index entry: it leaves every indexed column (and the
// due index's key, next_attempt_at) as it was.
func TestOutboxLeaseIsHOT(t *testing.T) {
	t.Parallel()
	db, _, _ := seedOutbox(t, 3)
	ctx := context.Background()
	// One connection, so that the statistics this backend flushes are the
	// claim's.
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store := &postgres.OutboxStore{Pool: pool}

	var before time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(next_attempt_at) FROM outbox`).Scan(&before))
	now := time.Now()
	until := now.Add(time.Minute).UTC().Truncate(time.Microsecond)
	msgs, err := store.Claim(ctx, "w", now, until, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	var after, leased time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(next_attempt_at), min(leased_until) FROM outbox`).Scan(&after, &leased))
	require.Equal(t, before, after, "a lease leaves next_attempt_at, the due index's key, alone")
	require.True(t, until.Equal(leased), "the lease's end is in leased_until: got %v, want %v", leased, until)

	_, err = pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var upd, hot int64
		err := pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'outbox'`).Scan(&upd, &hot)
		require.NoError(t, err)
		require.Equal(t, hot, upd, "every lease of a row whose page has room is a HOT update")
		return upd == 3
	}, 15*time.Second, 50*time.Millisecond, "three leases counted in pg_stat_user_tables")
}

// TestOutboxLeaseOfEarlierSchema: a row leased before leased_until existed
// (its lease's end in next_attempt_at) stays leased until that end, and
// then comes back as an unfinished attempt.
func TestOutboxLeaseOfEarlierSchema(t *testing.T) {
	t.Parallel()
	db, store, _ := seedOutbox(t, 1)
	ctx := context.Background()
	now := time.Now()
	_, err := db.Pool.Exec(ctx, `UPDATE outbox SET lease_owner = 'old', next_attempt_at = $1`, now.Add(time.Minute))
	require.NoError(t, err)
	msgs, err := store.Claim(ctx, "new", now, now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Empty(t, msgs, "the earlier lease still runs")
	msgs, err = store.Claim(ctx, "new", now.Add(2*time.Minute), now.Add(3*time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.True(t, msgs[0].Reclaimed)
}

func TestOutboxOutcomes(t *testing.T) {
	t.Parallel()
	db, store, _ := seedOutbox(t, 4)
	ctx := context.Background()
	now := time.Now()
	msgs, err := store.Claim(ctx, "w", now, now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, msgs, 4)
	retryAt := now.Add(time.Hour)
	require.NoError(t, store.Complete(ctx, "w", now, []notify.Result{
		{ID: msgs[0].ID, Outcome: notify.OutcomeSent, MessageID: "m0", Type: notify.TypeLMS},
		{ID: msgs[1].ID, Outcome: notify.OutcomeRetry, Error: "gateway: status 500", NextAttempt: retryAt},
		{ID: msgs[2].ID, Outcome: notify.OutcomeFailed, Error: "gateway: 400 invalid_number"},
		{ID: msgs[3].ID, Outcome: notify.OutcomeReleased, NextAttempt: now},
	}))
	type row struct {
		State    string
		Attempts int
		Next     time.Time
		Err      *string
	}
	get := func(id int64) row {
		var r row
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT state, attempts, next_attempt_at, last_error FROM outbox WHERE id = $1`, id).
			Scan(&r.State, &r.Attempts, &r.Next, &r.Err))
		return r
	}
	require.Equal(t, "sent", get(msgs[0].ID).State)
	r := get(msgs[1].ID)
	require.Equal(t, "pending", r.State)
	require.Equal(t, 1, r.Attempts)
	require.WithinDuration(t, retryAt, r.Next, time.Millisecond)
	r = get(msgs[2].ID)
	require.Equal(t, "failed", r.State)
	require.Equal(t, "gateway: 400 invalid_number", *r.Err)
	failed, err := store.Failed(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, failed, 1)
	require.Equal(t, msgs[2].Appointment, failed[0].Appointment)
	require.Equal(t, "gateway: 400 invalid_number", failed[0].LastError)
	r = get(msgs[3].ID)
	require.Equal(t, "pending", r.State)
	require.Zero(t, r.Attempts, "a release is not an attempt")

	due, err := store.Claim(ctx, "w2", now.Add(time.Second), now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, due, 1, "only the released row is due; the retry waits an hour")
	require.Equal(t, msgs[3].ID, due[0].ID)
	require.False(t, due[0].Reclaimed, "a released row is not an unfinished attempt")
}

func TestOutboxReportBeforeMarkSent(t *testing.T) {
	t.Parallel()
	_, store, seeded := seedOutbox(t, 1)
	ctx := context.Background()
	now := time.Now()
	msgs, err := store.Claim(ctx, "w", now, now.Add(time.Minute), 1)
	require.NoError(t, err)
	report := notify.Report{MessageID: "m1", Key: seeded.Keys[0], Status: notify.ReportDelivered, At: now}
	res, err := store.RecordReports(ctx, []notify.Report{report})
	require.NoError(t, err)
	require.Equal(t, []notify.ReportResult{notify.ReportRecorded}, res)
	res, err = store.RecordReports(ctx, []notify.Report{report})
	require.NoError(t, err)
	require.Equal(t, []notify.ReportResult{notify.ReportSeen}, res, "the same report twice is recorded once")
	require.NoError(t, store.Complete(ctx, "w", now, []notify.Result{{ID: msgs[0].ID, Outcome: notify.OutcomeSent, MessageID: "m1"}}))
	c, err := store.Counts(ctx, "")
	require.NoError(t, err)
	require.Equal(t, postgres.OutboxCounts{Delivered: 1}, c, "the late mark-sent does not undo delivered")
	res, err = store.RecordReports(ctx, []notify.Report{{MessageID: "x", Key: "nope", Status: notify.ReportDelivered, At: now}})
	require.NoError(t, err)
	require.Equal(t, []notify.ReportResult{notify.ReportUnknown}, res)
}

// TestOutboxReportBatch records one batch holding every kind of report and
// holds it to what the same reports recorded one by one would have done.
func TestOutboxReportBatch(t *testing.T) {
	t.Parallel()
	db, store, seeded := seedOutbox(t, 5)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	k := seeded.Keys
	_, err := store.RecordReports(ctx, []notify.Report{{MessageID: "m0", Key: k[0], Status: notify.ReportDelivered, At: now}})
	require.NoError(t, err)
	later := now.Add(time.Minute)
	batch := []notify.Report{
		{MessageID: "m0", Key: k[0], Status: notify.ReportDelivered, At: later},                    // seen before
		{MessageID: "m1", Key: k[1], Status: notify.ReportDelivered, At: later},                    // new
		{MessageID: "m2", Key: k[2], Status: notify.ReportFailed, Error: "handset off", At: later}, // new, failed
		{MessageID: "m3", Key: k[3], Status: notify.ReportFailed, Error: "late", At: later},        // m3's first...
		{MessageID: "x", Key: "nope", Status: notify.ReportDelivered, At: later},                   // unknown
		{MessageID: "m3", Key: k[3], Status: notify.ReportDelivered, At: later},                    // ...and second
		{MessageID: "m1", Key: k[4], Status: notify.ReportDelivered, At: later},                    // m1's id under another key
	}
	res, err := store.RecordReports(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, []notify.ReportResult{
		notify.ReportSeen, notify.ReportRecorded, notify.ReportRecorded, notify.ReportRecorded,
		notify.ReportUnknown, notify.ReportRecorded, notify.ReportSeen,
	}, res)

	type row struct {
		state, mid, lastError string
		deliveredAt           *time.Time
	}
	get := func(key string) row {
		var r row
		var mid, lastError *string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT state, gateway_message_id, last_error, delivered_at FROM outbox WHERE idempotency_key = $1`, key).
			Scan(&r.state, &mid, &lastError, &r.deliveredAt))
		if mid != nil {
			r.mid = *mid
		}
		if lastError != nil {
			r.lastError = *lastError
		}
		return r
	}
	r := get(k[0])
	require.Equal(t, "delivered", r.state)
	require.True(t, r.deliveredAt.Equal(now), "a report seen before changes nothing")
	r = get(k[1])
	require.Equal(t, "delivered", r.state)
	require.Equal(t, "m1", r.mid)
	require.True(t, r.deliveredAt.Equal(later))
	require.Equal(t, row{state: "failed", mid: "m2", lastError: "report: handset off"}, get(k[2]))
	require.Equal(t, row{state: "failed", mid: "m3", lastError: "report: late"}, get(k[3]), "the earlier of two reports moves the message")
	require.Equal(t, "pending", get(k[4]).state, "a message id already reported moves no other message")
	var stored int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM delivery_reports`).Scan(&stored))
	require.Equal(t, 5, stored, "m0 once, m1, m2, and m3's two statuses")
}

func TestOutboxResendRules(t *testing.T) {
	t.Parallel()
	db, store, seeded := seedOutbox(t, 2)
	ctx := context.Background()
	_, err := store.Resend(ctx, notify.ResendRequest{Appointment: seeded.Appointments[0], RequestedBy: "op"})
	require.ErrorIs(t, err, prereg.ErrConflict, "version 1 still pending")
	_, err = db.Pool.Exec(ctx, `UPDATE outbox SET state = 'failed'`)
	require.NoError(t, err)
	res, err := store.Resend(ctx, notify.ResendRequest{Appointment: seeded.Appointments[0], RequestedBy: "op", Reason: "failed"})
	require.NoError(t, err)
	require.Equal(t, 2, res.Version)
	require.Equal(t, prereg.OutboxKey(seeded.Campaign.ID, seeded.Appointments[0], 2), res.Key)
	_, err = db.Pool.Exec(ctx, `UPDATE appointments SET status = 'cancelled' WHERE id = $1`, seeded.Appointments[1])
	require.NoError(t, err)
	_, err = store.Resend(ctx, notify.ResendRequest{Appointment: seeded.Appointments[1], RequestedBy: "op"})
	require.ErrorIs(t, err, prereg.ErrConflict, "a cancelled appointment")
	_, err = store.Resend(ctx, notify.ResendRequest{Appointment: 1 << 40, RequestedBy: "op"})
	require.ErrorIs(t, err, prereg.ErrNotFound)
}
