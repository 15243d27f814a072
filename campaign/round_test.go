package campaign_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
)

// A window's round is allocated an hour after it closes unless the file
// says when; the distance bound is 50 km unless the file says otherwise.
func TestAllocationDefaultsAndSettings(t *testing.T) {
	t.Parallel()
	c, err := campaign.Parse([]byte(minimal), "")
	require.NoError(t, err)
	require.Equal(t, c.Windows[0].Closes.Add(time.Hour), c.Windows[0].AllocateAt)
	require.InDelta(t, 50.0, c.Allocation.MaxDistanceKm, 0)

	set := strings.Replace(minimal, `digits: [9]}`, `digits: [9], allocate_at: "2021-08-11 09:30"}`, 1) +
		"allocation: {max_distance_km: 0}\n"
	c, err = campaign.Parse([]byte(set), "")
	require.NoError(t, err)
	require.Equal(t, time.Date(2021, 8, 11, 0, 30, 0, 0, time.UTC), c.Windows[0].AllocateAt.UTC())
	require.Zero(t, c.Allocation.MaxDistanceKm, "0 is any distance")

	// What is stored (the spec, as JSON) gives the same campaign back.
	again, err := campaign.FromFile(c.Spec)
	require.NoError(t, err)
	require.Equal(t, c.Windows[0].AllocateAt, again.Windows[0].AllocateAt)
	require.Zero(t, again.Allocation.MaxDistanceKm)

	for _, tc := range []struct{ yaml, want string }{
		{strings.Replace(minimal, `digits: [9]}`, `digits: [9], allocate_at: "2021-08-10 17:00"}`, 1), "windows[0].allocate_at: the round is allocated at or after the window closes"},
		{strings.Replace(minimal, `digits: [9]}`, `digits: [9], allocate_at: "soon"}`, 1), "windows[0].allocate_at: cannot read"},
		{minimal + "allocation: {max_distance_km: -1}\n", "allocation.max_distance_km: want 0"},
	} {
		_, err := campaign.Parse([]byte(tc.yaml), "")
		require.ErrorContains(t, err, tc.want)
	}
}

// What a citizen is told comes next: the round, and the SMS range from
// the round's expected size and the SMS rate.
func TestRoundsAndSMSWindow(t *testing.T) {
	t.Parallel()
	c, err := campaign.LoadFile("../campaigns/covid-2021-18-49.yaml")
	require.NoError(t, err)
	d9, _ := c.Window("d9")
	require.Equal(t, 1_900_000, c.ExpectedRound(d9))
	catchUp, _ := c.Window("catch-up")
	require.Equal(t, 1_900_000, c.ExpectedRound(catchUp))
	from, until := c.SMSWindow(d9)
	kst := c.Location
	require.Equal(t, time.Date(2021, 8, 10, 19, 0, 0, 0, kst), from)
	// 30 minutes for the run + 1.9 M ÷ 200/s (2 h 38 min 20 s), rounded up.
	require.Equal(t, time.Date(2021, 8, 10, 22, 10, 0, 0, kst), until)

	w, ok := c.NextRound("d9", time.Date(2021, 8, 10, 12, 0, 0, 0, kst))
	require.True(t, ok)
	require.Equal(t, "d9", w.ID)
	w, ok = c.NextRound("d9", from)
	require.True(t, ok)
	require.Equal(t, "d0", w.ID, "at its round's time a waiting registration looks to the next round")
	_, ok = c.NextRound("d9", time.Date(2021, 8, 22, 0, 0, 0, 0, kst))
	require.False(t, ok, "after the last round there is none")

	start, end := c.Schedule.BandTimes(c.Schedule.Day(1), 2, kst)
	require.Equal(t, time.Date(2021, 8, 27, 15, 0, 0, 0, kst), start)
	require.Equal(t, time.Date(2021, 8, 27, 18, 0, 0, 0, kst), end)
	start, _ = c.Schedule.BandTimes(c.Schedule.Day(1), 3, kst)
	require.True(t, start.IsZero(), "no such band")
}
