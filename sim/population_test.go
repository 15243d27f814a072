package sim

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
)

func TestPopulationDeterministic(t *testing.T) {
	t.Parallel()
	a, err := NewPopulation(7, 3000, DemoCohort())
	require.NoError(t, err)
	b, err := NewPopulation(7, 3000, DemoCohort())
	require.NoError(t, err)
	require.Equal(t, a.People, b.People, "the same seed must give the same people")
	require.Equal(t, a.Families, b.Families)
	c, err := NewPopulation(8, 3000, DemoCohort())
	require.NoError(t, err)
	require.NotEqual(t, a.People, c.People, "another seed must give other people")
}

var mobile = regexp.MustCompile(`^010-\d{4}-\d{4}$`)

func TestPopulationGroundTruth(t *testing.T) {
	t.Parallel()
	cohort := DemoCohort()
	pop, err := NewPopulation(1, 8000, cohort)
	require.NoError(t, err)
	require.Len(t, pop.People, 8000)

	digits := map[int]int{}
	leap := 0
	ids := map[string]bool{}
	devices := map[string]bool{}
	phoneFamily := map[string]int{}
	shared := 0
	for i, x := range pop.People {
		require.Equal(t, i, x.Index)
		require.True(t, cohort.Contains(x.Birthdate), "person %d born outside the cohort", i)
		digits[campaign.Digit(x.Birthdate)]++
		if x.Birthdate.Month() == time.February && x.Birthdate.Day() == 29 {
			leap++
		}
		require.False(t, ids[x.ID], "person id twice")
		ids[x.ID] = true
		require.Regexp(t, mobile, x.Phone)
		require.True(t, strings.HasPrefix(x.E164(), "+8210") && len(x.E164()) == 13, "E.164 form")
		if f, seen := phoneFamily[x.Phone]; seen {
			require.Equal(t, f, x.Family, "a phone is shared only within a family")
			shared++
		}
		phoneFamily[x.Phone] = x.Family
		require.GreaterOrEqual(t, len(x.Devices), 1)
		require.LessOrEqual(t, len(x.Devices), 3)
		for _, d := range x.Devices {
			require.False(t, devices[d], "device id twice")
			devices[d] = true
		}
		_, ok := RegionByCode(x.Region)
		require.True(t, ok, "unknown region")
		require.Contains(t, pop.Families[x.Family], i)
		for _, r := range pop.Relatives(i) {
			require.Equal(t, x.Family, pop.People[r].Family)
			require.Equal(t, x.Region, pop.People[r].Region, "a family lives in one region")
		}
	}
	require.Len(t, digits, 10, "every birth-date digit")
	require.GreaterOrEqual(t, leap, 8, "29 February births (about one in a thousand, pinned)")
	require.Positive(t, shared, "some phones are shared within a family")
	for _, fam := range pop.Families {
		require.True(t, len(fam) >= 1 && len(fam) <= 4, "family of %d", len(fam))
	}

	// Regions in proportion to population: Seoul (codes 11…) holds about
	// 18.5 % of the country.
	total, seoul := 0, 0
	for _, r := range Regions() {
		total += r.Population
		if strings.HasPrefix(r.Code, "11") {
			seoul += r.Population
		}
	}
	got := 0
	for _, x := range pop.People {
		if strings.HasPrefix(x.Region, "11") {
			got++
		}
	}
	require.InDelta(t, float64(seoul)/float64(total), float64(got)/float64(len(pop.People)), 0.02, "Seoul's share of people")
}

func TestPopulationEdgeCohorts(t *testing.T) {
	t.Parallel()
	day := func(s string) time.Time { d, _ := campaign.ParseDate(s); return d }
	for _, tc := range []struct {
		name     string
		cohort   campaign.Cohort
		n        int
		wantLeap bool
	}{
		{"no leap year", campaign.Cohort{BornFrom: day("2001-01-01"), BornTo: day("2003-12-31")}, 500, false},
		{"one leap day", campaign.Cohort{BornFrom: day("2000-02-01"), BornTo: day("2000-03-31")}, 50, true},
		{"fewer than ten people", DemoCohort(), 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pop, err := NewPopulation(3, tc.n, tc.cohort)
			require.NoError(t, err)
			leap := false
			digits := map[int]bool{}
			for _, x := range pop.People {
				require.True(t, tc.cohort.Contains(x.Birthdate))
				leap = leap || (x.Birthdate.Month() == time.February && x.Birthdate.Day() == 29)
				digits[campaign.Digit(x.Birthdate)] = true
			}
			require.Equal(t, tc.wantLeap, leap)
			if tc.n >= 10 {
				require.Len(t, digits, 10)
			}
		})
	}
	_, err := NewPopulation(1, 0, DemoCohort())
	require.Error(t, err)
}
