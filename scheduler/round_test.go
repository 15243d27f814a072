package scheduler_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/scheduler"
)

// The window d9 of the test campaign, in UTC.
var (
	d9Opens  = time.Date(2021, 8, 9, 11, 0, 0, 0, time.UTC)
	d9Closes = windowCloses
	d0Closes = time.Date(2021, 8, 11, 9, 0, 0, 0, time.UTC)
)

// The clock alone commits each window's seed when it opens and freezes its
// input when it closes; registrations added after the freeze are not drawn
// in that round but in the next one.
func TestAdvanceRounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 1, 1, seoul(1)) // 5 places
	a := w.allocator(21, 100)

	w.now = d9Opens.Add(-time.Minute)
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	_, err := w.store.Seed(ctx, campaignID, "d9")
	require.ErrorIs(t, err, scheduler.ErrNoSeed, "no seed before the window opens")

	w.now = d9Opens.Add(time.Second)
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	seed, err := w.store.Seed(ctx, campaignID, "d9")
	require.NoError(t, err, "the seed is committed once the window opens")
	require.True(t, seed.CommittedAt.Equal(w.now))
	_, err = w.store.Seed(ctx, campaignID, "d0")
	require.ErrorIs(t, err, scheduler.ErrNoSeed, "d0 has not opened")
	_, err = w.store.Round(ctx, campaignID, "d9")
	require.ErrorIs(t, err, scheduler.ErrNotFrozen, "d9 is open")

	w.insert(t, crowd(50))
	w.now = d9Closes
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	round, err := w.store.Round(ctx, campaignID, "d9")
	require.NoError(t, err, "the input is frozen when the window closes")
	require.Len(t, round.Input, 50)
	require.True(t, slices.IsSorted(round.Input))
	require.True(t, round.FrozenAt.Equal(d9Closes))

	// Again, later, from another replica: nothing changes.
	w.now = d9Closes.Add(time.Hour)
	require.NoError(t, w.allocator(99, 100).AdvanceRounds(ctx, campaignID))
	again, err := w.store.Round(ctx, campaignID, "d9")
	require.NoError(t, err)
	require.Equal(t, round, again)
	seedAgain, err := w.store.Seed(ctx, campaignID, "d9")
	require.NoError(t, err)
	require.Equal(t, seed.Hash, seedAgain.Hash)

	// Three late registrations of d9 (held decisions released after the
	// close): the round draws without them, its bound agrees with the
	// frozen list.
	w.insert(t, crowd(3))
	res, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
	require.NoError(t, err)
	require.Equal(t, 50, res.Registrations)
	require.Equal(t, round.Input[len(round.Input)-1], res.Bound)
	require.Equal(t, round.InputHash, res.InputHash)
	require.True(t, res.InputFrozenAt.Equal(d9Closes))
	require.Equal(t, 5, res.Assigned)

	// They go to the next round with the 45 left over.
	w.now = d0Closes
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	next, err := w.store.Round(ctx, campaignID, "d0")
	require.NoError(t, err)
	require.Len(t, next.Input, 48)
	for i := range 3 {
		require.Contains(t, next.Input, round.Input[len(round.Input)-1]+int64(i)+1, "late registration in the next round")
	}
	_, err = w.db.Pool.Exec(ctx, `UPDATE slots SET capacity = capacity + 20`)
	require.NoError(t, err)
	res, err = a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d0"})
	require.NoError(t, err)
	require.Equal(t, 48, res.Registrations, "the next round draws them")
	require.Zero(t, res.UnassignedByReason[scheduler.ReasonNoCapacity], "room for all but those whose earliest date is after the schedule")
	require.Positive(t, res.Assigned)
	f, err := a.PublishRound(ctx, campaignID, "d0")
	require.NoError(t, err)
	require.NoError(t, scheduler.VerifyRound(&f))
}

// A published round verifies from its file alone, and any tampering with
// the seed, the input or an assignment is named.
func TestPublishVerifyRound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 2, 2, seoul(6)) // 120 places for 200
	a := w.allocator(22, 40)
	w.now = d9Opens
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))
	w.insert(t, crowd(200))
	w.now = d9Closes
	require.NoError(t, a.AdvanceRounds(ctx, campaignID))

	early, err := a.PublishRound(ctx, campaignID, "d9")
	require.NoError(t, err)
	require.Len(t, early.Input, 200, "the input is public from the close")
	require.Empty(t, early.Seed, "the seed stays secret until the run")
	var mm *scheduler.MismatchError
	require.ErrorAs(t, scheduler.VerifyRound(&early), &mm, "an undrawn round does not verify")

	res, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
	require.NoError(t, err)
	require.Equal(t, 120, res.Assigned)

	f, err := a.PublishRound(ctx, campaignID, "d9")
	require.NoError(t, err)
	require.Equal(t, res.Seed, f.Seed)
	require.Len(t, f.Assignments, 120)
	require.Len(t, f.Unassigned, 80)
	dir := t.TempDir()
	_, err = scheduler.WriteRoundFile(dir, &f)
	require.NoError(t, err)
	read, err := scheduler.ReadRoundFile(dir, campaignID, "d9")
	require.NoError(t, err)
	require.NoError(t, scheduler.VerifyRound(read), "the published round verifies")

	// A later round that books the leftovers does not change this one.
	_, err = w.db.Pool.Exec(ctx, `UPDATE slots SET capacity = capacity + 10`)
	require.NoError(t, err)
	w.now = d0Closes
	_, err = a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d0", Policy: scheduler.PolicyFCFS})
	require.NoError(t, err)
	later, err := a.PublishRound(ctx, campaignID, "d9")
	require.NoError(t, err)
	later.Published = f.Published
	require.Equal(t, f, later)

	tamper := []struct {
		name   string
		change func(f *scheduler.RoundFile)
	}{
		{"seed", func(f *scheduler.RoundFile) {
			flip := map[bool]string{true: "1", false: "0"}[f.Seed[0] == '0']
			f.Seed = flip + f.Seed[1:]
		}},
		{"seed hash", func(f *scheduler.RoundFile) {
			f.SeedHash = scheduler.SeedHash([]byte("another seed"))
		}},
		{"input with an added registration", func(f *scheduler.RoundFile) {
			f.Input = append(f.Input, scheduler.InputEntry{ID: f.Input[len(f.Input)-1].ID + 1, Region: "11110"})
		}},
		{"input without a registration", func(f *scheduler.RoundFile) {
			f.Input = f.Input[1:]
		}},
		{"input with a registration's region changed", func(f *scheduler.RoundFile) {
			f.Input[7].Region = "26350"
		}},
		{"assignment moved to another slot", func(f *scheduler.RoundFile) {
			b := &f.Assignments[3]
			b.Band = 1 - b.Band
		}},
		{"assignment given to an unassigned registration", func(f *scheduler.RoundFile) {
			winner := f.Assignments[0]
			f.Assignments[0].Registration = f.Unassigned[0]
			f.Unassigned[0] = winner.Registration
		}},
		{"assignment dropped", func(f *scheduler.RoundFile) {
			f.Assignments = f.Assignments[1:]
		}},
		{"inventory with more room", func(f *scheduler.RoundFile) {
			f.Inventory.Capacity[0]++
		}},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			g, err := scheduler.ReadRoundFile(dir, campaignID, "d9")
			require.NoError(t, err)
			tc.change(g)
			err = scheduler.VerifyRound(g)
			require.Error(t, err, "tampering goes unnoticed")
			require.True(t, errors.As(err, &mm), "a mismatch, not %v", err)
		})
	}
}

// Loading a campaign commits the windows open now, and only those.
func TestCommitOpenWindows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 1, 1, seoul(1))
	a := w.allocator(23, 10)

	w.now = d9Opens.Add(-time.Second)
	cms, err := a.CommitOpenWindows(ctx, campaignID)
	require.NoError(t, err)
	require.Empty(t, cms, "nothing is open yet")

	w.now = d9Opens.Add(time.Hour)
	cms, err = a.CommitOpenWindows(ctx, campaignID)
	require.NoError(t, err)
	require.Len(t, cms, 1)
	require.Equal(t, "d9", cms[0].Window)
	again, err := a.CommitOpenWindows(ctx, campaignID)
	require.NoError(t, err)
	require.Equal(t, cms, again, "the first seed stays")

	w.now = d0Closes.Add(time.Hour)
	cms, err = a.CommitOpenWindows(ctx, campaignID)
	require.NoError(t, err)
	require.Empty(t, cms, "closed windows are not committed late")
	_, err = w.store.Seed(ctx, campaignID, "d0")
	require.ErrorIs(t, err, scheduler.ErrNoSeed)
}
