package postgres_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/scheduler"
)

// allocationSetup loads a campaign with one clinic of capacity 1 per band
// over one day and one band, and n registrations of window d9.
func allocationSetup(tb testing.TB, n int) (*pgtest.DB, *postgres.AllocationStore) {
	tb.Helper()
	ctx := context.Background()
	db := pgtest.New(tb)
	c, err := campaign.FromFile(campaign.File{
		ID:        "alloc-store",
		Cohort:    campaign.FileCohort{BornFrom: "1972-01-01", BornTo: "2003-12-31"},
		Windows:   []campaign.FileWindow{{ID: "d9", Opens: "2021-08-09T20:00:00+09:00", Closes: "2021-08-10T18:00:00+09:00", Digits: []int{9}}},
		Providers: []campaign.FileProvider{{Name: "pass", URL: "http://127.0.0.1:9101"}},
		Schedule:  campaign.FileSchedule{Start: "2021-08-26", Days: 1, Bands: []string{"09:00-12:00"}},
		Clinics:   []campaign.FileClinic{{ID: "c1", Name: "c1", Region: "11110", Lat: 37.5, Lng: 127, Capacity: 1}},
	})
	require.NoError(tb, err)
	_, err = (&postgres.CampaignStore{Pool: db.Pool}).Load(ctx, c)
	require.NoError(tb, err)
	for i := range n {
		_, err := db.Pool.Exec(ctx, `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region,
			phone_kid, phone_enc, first_receipt, device_key, received_at)
			VALUES ('alloc-store', $1, 0, 'd9', '1990-08-19', '11110', 'k1', '\x00', $2, 'dev', now())`,
			"identity-"+string(rune('a'+i)), "receipt-"+string(rune('a'+i)))
		require.NoError(tb, err)
	}
	return db, &postgres.AllocationStore{Pool: db.Pool}
}

func TestAllocationStoreSeeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, st := allocationSetup(t, 0)
	_, err := st.Seed(ctx, "alloc-store", "d9")
	require.ErrorIs(t, err, scheduler.ErrNoSeed)
	_, err = st.SeedCommitment(ctx, "alloc-store", "d9")
	require.ErrorIs(t, err, prereg.ErrNotFound)

	at := time.Date(2021, 8, 9, 12, 0, 0, 0, time.UTC)
	seed := bytes.Repeat([]byte{7}, scheduler.SeedSize)
	cm, err := st.CommitSeed(ctx, "alloc-store", "d9", seed, at)
	require.NoError(t, err)
	require.Equal(t, scheduler.SeedHash(seed), cm.Hash)
	// A second commitment never replaces the first.
	cm2, err := st.CommitSeed(ctx, "alloc-store", "d9", bytes.Repeat([]byte{8}, scheduler.SeedSize), at.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, cm.Hash, cm2.Hash)
	require.True(t, cm2.CommittedAt.Equal(at))

	pub, err := st.SeedCommitment(ctx, "alloc-store", "d9")
	require.NoError(t, err)
	require.Equal(t, cm.Hash, pub.Hash)
	require.Empty(t, pub.Seed, "the seed stays secret until revealed")
	require.NoError(t, st.RevealSeed(ctx, "alloc-store", "d9", at.Add(48*time.Hour)))
	pub, err = st.SeedCommitment(ctx, "alloc-store", "d9")
	require.NoError(t, err)
	require.Equal(t, "0707070707070707070707070707070707070707070707070707070707070707", pub.Seed)
	require.NotNil(t, pub.RevealedAt)
}

func TestAllocationStoreLockAndChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, st := allocationSetup(t, 2)
	release, err := st.Lock(ctx, "alloc-store", false)
	require.NoError(t, err)
	_, err = st.Lock(ctx, "alloc-store", false)
	require.ErrorIs(t, err, scheduler.ErrBusy)
	other, err := st.Lock(ctx, "another-campaign", false)
	require.NoError(t, err, "campaigns lock separately")
	other()

	run, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: "alloc-store", Window: "d9", Policy: scheduler.PolicyFCFS, StartedAt: time.Now()})
	require.NoError(t, err)
	require.Positive(t, run.Bound)
	snap, err := st.Snapshot(ctx, run)
	require.NoError(t, err)
	require.Len(t, snap.Registrations, 2)
	require.Equal(t, []int32{1}, snap.Inventory.Capacity)

	day := time.Date(2021, 8, 26, 0, 0, 0, 0, time.UTC)
	ids := []int64{snap.Registrations[0].ID, snap.Registrations[1].ID}
	// Two appointments in a slot of one: the schema refuses the whole chunk.
	err = st.WriteChunk(ctx, run, scheduler.Chunk{Assignments: []scheduler.Assignment{
		{Registration: ids[0], Clinic: "c1", Day: day}, {Registration: ids[1], Clinic: "c1", Day: day}}})
	require.Error(t, err)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments`).Scan(&n))
	require.Zero(t, n, "nothing of a refused chunk is written")

	require.NoError(t, st.WriteChunk(ctx, run, scheduler.Chunk{
		Assignments: []scheduler.Assignment{{Registration: ids[0], Clinic: "c1", Day: day}},
		Unassigned:  []scheduler.Unassigned{{Registration: ids[1], Reason: scheduler.ReasonNoCapacity}},
	}))
	var key string
	var apptID int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT a.id, o.idempotency_key FROM appointments a JOIN outbox o ON o.appointment_id = a.id`).Scan(&apptID, &key))
	require.Equal(t, prereg.OutboxKey("alloc-store", apptID, 1), key)
	var reason string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT unassigned_reason FROM registrations WHERE id = $1`, ids[1]).Scan(&reason))
	require.Equal(t, string(scheduler.ReasonNoCapacity), reason)
	got, err := st.Run(ctx, run.ID)
	require.NoError(t, err)
	require.Equal(t, 2, got.Done)

	// A second appointment for the same registration: refused.
	err = st.WriteChunk(ctx, run, scheduler.Chunk{Assignments: []scheduler.Assignment{{Registration: ids[0], Clinic: "c1", Day: day}}})
	require.Error(t, err)

	// Resuming sees the run's own writes as written and the slot as it was.
	snap, err = st.Snapshot(ctx, run)
	require.NoError(t, err)
	require.Equal(t, []int32{0}, snap.Inventory.Used, "the run's own appointment is subtracted")
	for _, r := range snap.Registrations {
		require.True(t, r.Written, "registration %d", r.ID)
	}
	release()
	release2, err := st.Lock(ctx, "alloc-store", false)
	require.NoError(t, err, "released")
	release2()
	_, err = st.Run(ctx, 999999)
	require.ErrorIs(t, err, prereg.ErrNotFound)
}
