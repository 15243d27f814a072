package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
	rec, err := store.RecordReport(ctx, notify.Report{MessageID: "m1", Key: seeded.Keys[0], Status: notify.ReportDelivered, At: now})
	require.NoError(t, err)
	require.True(t, rec)
	rec, err = store.RecordReport(ctx, notify.Report{MessageID: "m1", Key: seeded.Keys[0], Status: notify.ReportDelivered, At: now})
	require.NoError(t, err)
	require.False(t, rec, "the same report twice is recorded once")
	require.NoError(t, store.Complete(ctx, "w", now, []notify.Result{{ID: msgs[0].ID, Outcome: notify.OutcomeSent, MessageID: "m1"}}))
	c, err := store.Counts(ctx, "")
	require.NoError(t, err)
	require.Equal(t, postgres.OutboxCounts{Delivered: 1}, c, "the late mark-sent does not undo delivered")
	_, err = store.RecordReport(ctx, notify.Report{MessageID: "x", Key: "nope", Status: notify.ReportDelivered, At: now})
	require.ErrorIs(t, err, prereg.ErrNotFound)
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
