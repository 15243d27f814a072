package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/scheduler"
)

var (
	requestBirth = time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC) // the status helpers' claimed birth date
	wrongBirth   = time.Date(1990, 8, 29, 0, 0, 0, 0, time.UTC)
)

func requestDB(t *testing.T) (*pgxpool.Pool, *postgres.RequestStore, *postgres.StatusStore) {
	t.Helper()
	pool := pgtest.New(t).Pool
	statusCampaign(t, pool)
	return pool, &postgres.RequestStore{Pool: pool}, &postgres.StatusStore{Pool: pool}
}

func queryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

func cancellationSMS(t *testing.T, pool *pgxpool.Pool, reg int64) int {
	t.Helper()
	return queryInt(t, pool, `SELECT count(*) FROM outbox WHERE kind = 'cancellation' AND registration_id = $1`, reg)
}

// A cancellation that arrives while the submission is in flight takes
// effect when dedupe decides it: the lookup says cancelled before and
// after, and the one cancellation SMS is queued once the registration
// exists.
func TestCancelBeforeDecision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, st := requestDB(t)

	require.NoError(t, rq.Cancel(ctx, "r-early", requestBirth))
	d, err := st.Status(ctx, "r-early")
	require.NoError(t, err, "an undecided receipt with a cancellation is answered")
	require.Equal(t, prereg.StatusCancelled, d.Status)
	require.True(t, d.Birthdate.Equal(requestBirth), "the lookup compares the cancellation's birth date")

	reg := statusRegister(t, pool, "r-early", "id-early")
	require.NoError(t, rq.Resolve(ctx, []string{"r-early"}), "dedupe's hook after the decision")
	d, err = st.Status(ctx, "r-early")
	require.NoError(t, err)
	require.Equal(t, prereg.StatusCancelled, d.Status)
	require.Equal(t, 1, cancellationSMS(t, pool, reg), "one cancellation SMS")
	require.Equal(t, "applied", queryString(t, pool, `SELECT outcome FROM cancellations WHERE receipt = 'r-early'`))

	// Repeated, by the citizen and by a replayed batch: nothing more.
	require.NoError(t, rq.Cancel(ctx, "r-early", requestBirth))
	require.NoError(t, rq.Resolve(ctx, []string{"r-early"}))
	require.Equal(t, 1, cancellationSMS(t, pool, reg), "still one cancellation SMS")
}

func queryString(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) string {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&s), sql)
	return s
}

// A cancellation asked with another birth date for an undecided receipt
// is void once the decision shows the date: nothing is cancelled.
func TestCancelWrongBirthdateIsVoid(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, st := requestDB(t)

	require.NoError(t, rq.Cancel(ctx, "r-wrong", wrongBirth))
	reg := statusRegister(t, pool, "r-wrong", "id-wrong")
	require.NoError(t, rq.Resolve(ctx, []string{"r-wrong"}))
	require.Equal(t, "void", queryString(t, pool, `SELECT outcome FROM cancellations WHERE receipt = 'r-wrong'`))
	d, err := st.Status(ctx, "r-wrong")
	require.NoError(t, err)
	require.Equal(t, prereg.StatusRegistered, d.Status, "a void cancellation changes nothing")
	require.Zero(t, cancellationSMS(t, pool, reg))
}

// Cancelling a scheduled registration frees its slot, fails its appointment
// SMS that has not gone out, and queues the cancellation SMS.
func TestCancelScheduledFreesSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, st := requestDB(t)

	reg := statusRegister(t, pool, "r-sched", "id-sched")
	statusAppoint(t, pool, reg, "scheduled", "pending")
	statusExec(t, pool, `UPDATE slots SET used = 1 WHERE campaign = 'status-test' AND clinic = 'c1' AND day = '2021-08-27' AND band = 1`)

	require.NoError(t, rq.Cancel(ctx, "r-sched", requestBirth))
	require.Equal(t, 0, queryInt(t, pool, `SELECT used FROM slots WHERE campaign = 'status-test' AND clinic = 'c1' AND day = '2021-08-27' AND band = 1`), "the slot is free")
	require.Equal(t, "cancelled", queryString(t, pool, `SELECT status FROM appointments WHERE registration_id = $1`, reg))
	require.Equal(t, "failed", queryString(t, pool, `SELECT state FROM outbox WHERE kind = 'appointment' AND appointment_id = (SELECT id FROM appointments WHERE registration_id = $1)`, reg),
		"the appointment SMS that had not gone out never goes out")
	require.Equal(t, 1, cancellationSMS(t, pool, reg))
	d, err := st.Status(ctx, "r-sched")
	require.NoError(t, err)
	require.Equal(t, prereg.StatusCancelled, d.Status)

	// The claim gives the cancellation message to notify, with the phone of
	// the registration.
	msgs, err := (&postgres.OutboxStore{Pool: pool}).Claim(ctx, "w1", time.Now(), time.Now().Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "only the cancellation message is due")
	require.True(t, msgs[0].Cancellation)
	require.Equal(t, postgres.CancelKey("status-test", reg), msgs[0].Key)
}

// A duplicate's receipt cancels the person's registration (its birth date
// is the person's), and every receipt of the person then says cancelled.
func TestCancelFromDuplicate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, st := requestDB(t)

	reg := statusRegister(t, pool, "r-first", "id-dup")
	statusDecide(t, pool, "r-second", "duplicate", "other_device", &reg, nil)
	other := statusRegister(t, pool, "r-other", "id-other")

	require.NoError(t, rq.Cancel(ctx, "r-second", requestBirth))
	for _, r := range []string{"r-first", "r-second"} {
		d, err := st.Status(ctx, r)
		require.NoError(t, err)
		require.Equal(t, prereg.StatusCancelled, d.Status, r)
	}
	d, err := st.Status(ctx, "r-other")
	require.NoError(t, err)
	require.Equal(t, prereg.StatusRegistered, d.Status, "another person's registration is untouched")
	require.Equal(t, 1, cancellationSMS(t, pool, reg))
	require.Zero(t, cancellationSMS(t, pool, other))
}

// A change applies before the registration is in a round and is refused
// after; an unknown clinic is refused; a change of an undecided receipt
// applies when it is decided.
func TestChangeClinic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, _ := requestDB(t)
	statusExec(t, pool, `INSERT INTO clinics (campaign, id, name, region, lat, lng) VALUES ('status-test', 'c2', 'Clinic 2', '11680', 37.5, 127.0)`)

	reg := statusRegister(t, pool, "r-change", "id-change")
	require.ErrorIs(t, rq.Change(ctx, "r-change", requestBirth, "nowhere"), intake.ErrUnknownClinic)
	require.NoError(t, rq.Change(ctx, "r-change", requestBirth, "c2"))
	require.Equal(t, "c2", queryString(t, pool, `SELECT clinic FROM registrations WHERE id = $1`, reg))

	statusAppoint(t, pool, reg, "scheduled")
	require.ErrorIs(t, rq.Change(ctx, "r-change", requestBirth, "c1"), intake.ErrAlreadyAllocated)
	require.Equal(t, "c2", queryString(t, pool, `SELECT clinic FROM registrations WHERE id = $1`, reg), "a refused change changes nothing")

	require.NoError(t, rq.Change(ctx, "r-later", requestBirth, "c2"), "an undecided receipt's change is recorded")
	late := statusRegister(t, pool, "r-later", "id-later")
	require.NoError(t, rq.Resolve(ctx, []string{"r-later"}))
	require.Equal(t, "c2", queryString(t, pool, `SELECT clinic FROM registrations WHERE id = $1`, late), "allocation will use the changed clinic")
}

// A registration cancelled before a run is left out of its snapshot.
func TestCancelledLeftOutOfSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, _ := requestDB(t)
	kept := statusRegister(t, pool, "r-kept", "id-kept")
	gone := statusRegister(t, pool, "r-gone", "id-gone")
	require.NoError(t, rq.Cancel(ctx, "r-gone", requestBirth))

	st := &postgres.AllocationStore{Pool: pool}
	run, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: "status-test", Window: "d9", Policy: scheduler.PolicyFCFS, StartedAt: time.Now()})
	require.NoError(t, err)
	snap, err := st.Snapshot(ctx, run)
	require.NoError(t, err)
	var ids []int64
	for _, r := range snap.Registrations {
		ids = append(ids, r.ID)
	}
	require.Contains(t, ids, kept)
	require.NotContains(t, ids, gone, "a cancelled registration draws no slot")
}

// Cancellations racing allocation chunks: whatever the interleaving, no
// cancelled registration holds a slot, every slot counts exactly its live
// appointments, and each cancelled registration has one cancellation SMS.
func TestCancelRacesAllocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, _ := requestDB(t)
	const n = 30
	regs := make([]int64, n)
	for i := range regs {
		regs[i] = statusRegister(t, pool, fmt.Sprintf("r-race-%d", i), fmt.Sprintf("id-race-%d", i))
	}
	st := &postgres.AllocationStore{Pool: pool}
	run, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: "status-test", Window: "d9", Policy: scheduler.PolicyFCFS, StartedAt: time.Now()})
	require.NoError(t, err)

	day := time.Date(2021, 8, 26, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	wg.Go(func() {
		for i := 0; i < n; i += 2 {
			c := scheduler.Chunk{Assignments: []scheduler.Assignment{
				{Registration: regs[i], Clinic: "c1", Day: day.AddDate(0, 0, i%2), Band: (i / 2) % 2},
				{Registration: regs[i+1], Clinic: "c1", Day: day.AddDate(0, 0, (i+1)%2), Band: ((i + 1) / 2) % 2},
			}}
			errs <- st.WriteChunk(ctx, run, c)
		}
	})
	for i := 0; i < n; i += 3 {
		wg.Go(func() { errs <- rq.Cancel(ctx, fmt.Sprintf("r-race-%d", i), requestBirth) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	require.Zero(t, queryInt(t, pool, `SELECT count(*) FROM appointments a WHERE a.status = 'scheduled'
		AND EXISTS (SELECT 1 FROM cancellations c WHERE c.registration_id = a.registration_id)`), "a cancelled registration holds a slot")
	require.Zero(t, queryInt(t, pool, `SELECT count(*) FROM slots s WHERE s.campaign = 'status-test' AND s.used <> (SELECT count(*) FROM appointments a
		WHERE a.campaign = s.campaign AND a.clinic = s.clinic AND a.day = s.day AND a.band = s.band AND a.status = 'scheduled')`), "slot counters differ from live appointments")
	require.Equal(t, n/3, queryInt(t, pool, `SELECT count(*) FROM appointments WHERE status = 'cancelled'`), "every cancelled registration's draw is recorded cancelled")
	require.Equal(t, n-n/3, queryInt(t, pool, `SELECT count(*) FROM appointments WHERE status = 'scheduled'`))
	require.Equal(t, n/3, queryInt(t, pool, `SELECT count(*) FROM outbox WHERE kind = 'cancellation'`), "one cancellation SMS each")
	require.Zero(t, queryInt(t, pool, `SELECT count(*) FROM outbox o JOIN appointments a ON a.id = o.appointment_id
		WHERE a.status = 'cancelled' AND o.state = 'pending'`), "no appointment SMS of a cancelled registration is still to go out")
}

// A cancellation left pending behind its decision (a crash between
// recording and applying it, or a held submission reviewed since) is
// applied when the next allocation run is created.
func TestRunAppliesPendingCancellations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _, _ := requestDB(t)
	reg := statusRegister(t, pool, "r-pending", "id-pending")
	statusExec(t, pool, `INSERT INTO cancellations (receipt, birthdate) VALUES ('r-pending', '1990-08-19')`)

	st := &postgres.AllocationStore{Pool: pool}
	run, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: "status-test", Window: "d9", Policy: scheduler.PolicyFCFS, StartedAt: time.Now()})
	require.NoError(t, err)
	require.Equal(t, "applied", queryString(t, pool, `SELECT outcome FROM cancellations WHERE receipt = 'r-pending'`))
	require.Equal(t, 1, cancellationSMS(t, pool, reg))
	snap, err := st.Snapshot(ctx, run)
	require.NoError(t, err)
	require.Empty(t, snap.Registrations, "the cancelled registration draws no slot")
}

// A run's snapshot leaves out the registrations cancelled before the run
// was created and no others, so that a resumed run plans exactly what the
// interrupted one planned; the next run leaves the later ones out too.
func TestSnapshotStableAcrossLaterCancellations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rq, _ := requestDB(t)
	gone := statusRegister(t, pool, "r-a", "id-a")
	b := statusRegister(t, pool, "r-b", "id-b")
	c := statusRegister(t, pool, "r-c", "id-c")
	require.NoError(t, rq.Cancel(ctx, "r-a", requestBirth))

	st := &postgres.AllocationStore{Pool: pool}
	ids := func(run scheduler.RunRecord) []int64 {
		snap, err := st.Snapshot(ctx, run)
		require.NoError(t, err)
		var out []int64
		for _, r := range snap.Registrations {
			out = append(out, r.ID)
		}
		return out
	}
	run, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: "status-test", Window: "d9", Policy: scheduler.PolicyFCFS, StartedAt: time.Now()})
	require.NoError(t, err)
	first := ids(run)
	require.ElementsMatch(t, []int64{b, c}, first)
	require.NotContains(t, first, gone)

	require.NoError(t, rq.Cancel(ctx, "r-b", requestBirth), "cancelled while the run is under way")
	require.Equal(t, first, ids(run), "the run's (and a resumed run's) snapshot does not move")
	require.NoError(t, st.FinishRun(ctx, run.ID, scheduler.StateDone, nil, "", time.Now()))

	next, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: "status-test", Window: "d9", Policy: scheduler.PolicyFCFS, StartedAt: time.Now()})
	require.NoError(t, err)
	require.Equal(t, []int64{c}, ids(next))
}
