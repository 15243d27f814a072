package scheduler_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/scheduler"
)

// cancel records an applied cancellation of registrations, as the request
// store does once the decision is known.
func (w *world) cancel(tb testing.TB, ids []int64) {
	tb.Helper()
	for _, id := range ids {
		_, err := w.db.Pool.Exec(context.Background(), `INSERT INTO cancellations
			(receipt, birthdate, outcome, campaign, registration_id, resolved_seq, resolved_at)
			SELECT first_receipt, birthdate, 'applied', campaign, id, nextval('cancellation_resolutions'), now()
			FROM registrations WHERE id = $1`, id)
		require.NoError(tb, err)
	}
}

// A lottery round with cancellations on both sides of its freeze: those
// cancelled before are not in its input; those cancelled after are drawn as
// the published file says, their appointments written cancelled and
// holding no slot. The round verifies from its file, and the slots count
// exactly the live appointments.
func TestLotteryRoundWithCancellations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 2, 2, seoul(6)) // 120 places
	a := w.allocator(23, 30)
	w.now = d9Opens
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	w.insert(t, crowd(150))
	var ids []int64
	rows, err := w.db.Pool.Query(ctx, `SELECT id FROM registrations ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	w.cancel(t, ids[:5])

	w.now = d9Closes
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	round, err := w.store.Round(ctx, campaignID, "d9")
	require.NoError(t, err)
	require.Len(t, round.Input, 145, "registrations cancelled before the freeze are not drawn")
	w.cancel(t, ids[5:25])

	res, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
	require.NoError(t, err)
	require.Equal(t, 145, res.Registrations, "the frozen input is drawn whole")
	f, err := a.PublishRound(ctx, campaignID, "d9")
	require.NoError(t, err)
	require.NoError(t, scheduler.VerifyRound(&f), "the round verifies from its file")

	var live, dead, held, bad int
	require.NoError(t, w.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'scheduled'), count(*) FILTER (WHERE status = 'cancelled'),
		    count(*) FILTER (WHERE status = 'scheduled' AND registration_id = ANY($1))
		FROM appointments`, ids[:25]).Scan(&live, &dead, &held))
	require.Zero(t, held, "a cancelled registration holds a slot")
	require.Positive(t, dead, "cancelled registrations drew slots that stay free")
	require.Equal(t, res.Assigned, live+dead)
	require.NoError(t, w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM slots s WHERE s.used <> (SELECT count(*) FROM appointments a
		WHERE (a.campaign, a.clinic, a.day, a.band) = (s.campaign, s.clinic, s.day, s.band) AND a.status = 'scheduled')`).Scan(&bad))
	require.Zero(t, bad, "slots count exactly their live appointments")
	require.NoError(t, w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox o JOIN appointments a ON a.id = o.appointment_id
		WHERE a.status = 'cancelled'`).Scan(&bad))
	require.Zero(t, bad, "no appointment SMS for a cancelled registration")
}
