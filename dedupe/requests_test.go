package dedupe_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
)

// Cancellations asked while the submissions were still in flight take
// effect when dedupe decides them: the person's registration is
// cancelled with one SMS queued, a wrong birth date's request is void,
// and dedupe's own decisions are those of a run without cancellations.
func TestCancelledInFlight(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	c := loadCampaign(t, e.campaigns, 4, 4, 40)
	w := newWorld(c, 11, 40)
	requests := &postgres.RequestStore{Pool: e.db.Pool}

	birth := time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC)
	var cancelled []string
	for _, o := range w.outcomes {
		if o.Verdict == prereg.VerdictVerified && len(cancelled) < 5 {
			cancelled = append(cancelled, o.Receipt)
		}
	}
	for _, r := range cancelled[:4] {
		require.NoError(t, requests.Cancel(ctx, r, birth), "cancel before the decision")
	}
	wrong := cancelled[4]
	require.NoError(t, requests.Cancel(ctx, wrong, birth.AddDate(0, 0, 1)))

	e.startWorker(t, e.js.JS, dedupe.Config{Requests: requests})
	w.publish(t, e.js.JS)
	ds := score(t, e, w)
	// The decisions are visible from their commit; the requests are
	// resolved right after, before the batch is acknowledged.
	require.Eventually(t, func() bool {
		var pending int
		err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM cancellations q JOIN decisions d ON d.receipt = q.receipt
			WHERE q.outcome IS NULL AND NOT (d.kind = 'held' AND d.review IS NULL)`).Scan(&pending)
		return err == nil && pending == 0
	}, 30*time.Second, 20*time.Millisecond, "every cancellation behind a decision resolved")

	for _, r := range cancelled[:4] {
		var outcome *string
		var reg *int64
		require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT outcome, registration_id FROM cancellations WHERE receipt = $1`, r).Scan(&outcome, &reg))
		if ds[r].Kind == prereg.KindHeld {
			require.Nil(t, outcome, "a held submission's cancellation waits for the review")
			continue
		}
		require.NotNil(t, outcome, "the cancellation of %s was honoured when it was decided", ds[r].Kind)
		require.Equal(t, "applied", *outcome)
		require.NotNil(t, reg, "it names the person's registration")
		var sms int
		require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE kind = 'cancellation' AND registration_id = $1`, *reg).Scan(&sms))
		require.Equal(t, 1, sms, "one cancellation SMS")
	}
	var outcome string
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT outcome FROM cancellations WHERE receipt = $1`, wrong).Scan(&outcome))
	require.Equal(t, "void", outcome, "a cancellation with another birth date cancels nothing")

	// The auditor sees them: per window and decision, and the people.
	var applied, people int64
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT registration_id) FROM cancellations WHERE outcome = 'applied'`).Scan(&applied, &people))
	rep, err := e.store.DedupeReport(ctx, c.ID, "", 5, time.Now())
	require.NoError(t, err)
	var counted int64
	for _, row := range rep.Cancellations {
		require.Equal(t, "d9", row.Window)
		counted += row.Cancellations
	}
	require.Equal(t, applied, counted, "every cancellation that took effect is counted")
	require.Equal(t, people, rep.RegistrationsCancelled)
	var buf bytes.Buffer
	require.NoError(t, rep.Write(&buf, dedupe.FormatText))
	require.Contains(t, buf.String(), "registrations cancelled")
}
