package sim

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
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
	// Plain checks in the loop: require's cost per call adds up under -race.
	for i, x := range pop.People {
		if x.Index != i || !cohort.Contains(x.Birthdate) {
			t.Fatalf("person %d: index %d, or born outside the cohort", i, x.Index)
		}
		digits[campaign.Digit(x.Birthdate)]++
		if x.Birthdate.Month() == time.February && x.Birthdate.Day() == 29 {
			leap++
		}
		if ids[x.ID] {
			t.Fatalf("person %d: person id twice", i)
		}
		ids[x.ID] = true
		if !mobile.MatchString(x.Phone) || !strings.HasPrefix(x.E164(), "+8210") || len(x.E164()) != 13 {
			t.Fatalf("person %d: phone not 010-XXXX-XXXX or its E.164 form not +8210XXXXXXXX", i)
		}
		if f, seen := phoneFamily[x.Phone]; seen {
			if f != x.Family {
				t.Fatalf("person %d: a phone shared outside the family", i)
			}
			shared++
		}
		phoneFamily[x.Phone] = x.Family
		if len(x.Devices) < 1 || len(x.Devices) > 3 {
			t.Fatalf("person %d: %d devices, want 1 to 3", i, len(x.Devices))
		}
		for _, d := range x.Devices {
			if devices[d] {
				t.Fatalf("person %d: device id twice", i)
			}
			devices[d] = true
		}
		if _, ok := region.ByCode(x.Region); !ok {
			t.Fatalf("person %d: unknown region", i)
		}
		if !slices.Contains(pop.Families[x.Family], i) {
			t.Fatalf("person %d: not in their family", i)
		}
		for _, r := range pop.Relatives(i) {
			if pop.People[r].Family != x.Family || pop.People[r].Region != x.Region {
				t.Fatalf("person %d: relative %d of another family or region", i, r)
			}
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
	for _, r := range region.All() {
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
