package scheduler

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

var day0 = time.Date(2021, 8, 26, 0, 0, 0, 0, time.UTC)

// inventory builds an inventory where every band of every day of a clinic
// has the same capacity.
func inventory(days, bands int, clinics []Clinic, capacity []int32) *Inventory {
	inv := &Inventory{Start: day0, Days: days, Bands: bands, Clinics: clinics}
	for c := range clinics {
		for range days * bands {
			inv.Capacity = append(inv.Capacity, capacity[c])
			inv.Used = append(inv.Used, 0)
		}
	}
	return inv
}

// A run holds every Registration it draws while it sorts and plans them:
// eight words, the earliest date in one of them.
func TestRegistrationIsSmall(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, unsafe.Sizeof(Registration{}), uintptr(64))
}

// A Date keeps every civil date exactly, and its zero is the zero time.
func TestDate(t *testing.T) {
	t.Parallel()
	require.Equal(t, Date(0), DateOf(time.Time{}))
	require.Equal(t, time.Time{}, Date(0).Time())
	for _, d := range []time.Time{day0, day0.AddDate(0, 0, -5), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2099, 12, 31, 0, 0, 0, 0, time.UTC)} {
		require.NotZero(t, DateOf(d))
		require.Equal(t, d, DateOf(d).Time(), "%s", d)
		require.Equal(t, d.Format(time.DateOnly), DateOf(d).Time().Format(time.DateOnly))
	}
}

// A run holds one Outcome per registration while it writes: it must stay
// two words, not grow a string per field again.
func TestOutcomeIsSmall(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, unsafe.Sizeof(Outcome{}), uintptr(16))
	for _, o := range []Outcome{{Slot: 3, how: viaNearby}, {Slot: -1, how: regionUnknown}} {
		require.Equal(t, o.Assigned(), o.Via() != "", "an outcome has a via exactly when assigned")
		require.Equal(t, !o.Assigned(), o.Reason() != "", "and a reason exactly when not")
	}
}

func TestPlanPreferenceOrder(t *testing.T) {
	t.Parallel()
	// Jongno (11110) has A and B; Jung-gu (11140) next door has C; Busan's
	// Haeundae (26350) is 320 km away with D; Jeju (50110) has E.
	clinics := []Clinic{
		{ID: "a", Region: "11110", Lat: 37.594, Lng: 126.977},
		{ID: "b", Region: "11110", Lat: 37.590, Lng: 126.980},
		{ID: "c", Region: "11140", Lat: 37.560, Lng: 126.995},
		{ID: "d", Region: "26350", Lat: 35.163, Lng: 129.163},
		{ID: "e", Region: "50110", Lat: 33.499, Lng: 126.531},
	}
	inv := inventory(1, 1, clinics, []int32{1, 1, 1, 2, 0})
	regs := []Registration{
		{ID: 1, Region: "11110", Clinic: "a"},
		{ID: 2, Region: "11110", Clinic: "a"},
		{ID: 3, Region: "11110", Clinic: "a"},
		{ID: 4, Region: "11110"},
		{ID: 5, Region: "11110"},
		{ID: 6, Region: "11110"},
		{ID: 7, Region: "11110", Earliest: DateOf(day0.AddDate(0, 0, 1))},
		{ID: 8, Region: "11170"}, // no clinic of its own: placed by its province
		{ID: 9, Region: "99999"}, // nowhere
	}
	order := []int{0, 1, 2, 3, 4, 5, 6, 7, 8}
	got := Plan(inv, regs, order, 0, nil)
	want := []struct {
		clinic string
		via    Via
		reason Reason
	}{
		{"a", ViaPreferred, ""},
		{"b", ViaRegion, ""},
		{"c", ViaNearby, ""},
		{"d", ViaNearby, ""},
		{"d", ViaNearby, ""},
		{"", "", ReasonNoCapacity},
		{"", "", ReasonEarliestAfterSchedule},
		{"", "", ReasonNoCapacity},
		{"", "", ReasonNoCapacity},
	}
	for k, w := range want {
		o := got[k]
		require.Equal(t, regs[order[k]].ID, o.Registration)
		if w.clinic == "" {
			require.False(t, o.Assigned(), "registration %d", o.Registration)
			require.Equal(t, w.reason, o.Reason(), "registration %d", o.Registration)
			continue
		}
		require.True(t, o.Assigned(), "registration %d: %s", o.Registration, o.Reason())
		c, _, _ := inv.slotOf(int(o.Slot))
		require.Equal(t, w.clinic, clinics[c].ID, "registration %d", o.Registration)
		require.Equal(t, w.via, o.Via(), "registration %d", o.Registration)
	}

	// With room left: a region without clinics goes to its province's
	// nearest; an unknown region is not sent anywhere.
	inv = inventory(1, 1, clinics, []int32{0, 0, 1, 1, 1})
	got = Plan(inv, regs, []int{7, 8}, 0, nil)
	c, _, _ := inv.slotOf(int(got[0].Slot))
	require.Equal(t, "c", clinics[c].ID)
	require.Equal(t, ReasonRegionUnknown, got[1].Reason())

	// A distance limit keeps Seoul out of Busan.
	inv = inventory(1, 1, clinics, []int32{0, 0, 0, 1, 1})
	got = Plan(inv, regs, []int{3}, 100, nil)
	require.Equal(t, ReasonNoCapacity, got[0].Reason())
}

func TestPlanEarliestDateAndBands(t *testing.T) {
	t.Parallel()
	clinics := []Clinic{{ID: "a", Region: "11110", Lat: 37.5, Lng: 127}}
	inv := inventory(3, 2, clinics, []int32{1})
	regs := []Registration{
		{ID: 1, Region: "11110", Clinic: "a", Earliest: DateOf(day0.AddDate(0, 0, 1))},
		{ID: 2, Region: "11110", Clinic: "a", Earliest: DateOf(day0.AddDate(0, 0, 1))},
		{ID: 3, Region: "11110", Clinic: "a", Earliest: DateOf(day0.AddDate(0, 0, -5))},
		{ID: 4, Region: "11110", Clinic: "a", Earliest: DateOf(day0.AddDate(0, 0, 2))},
		{ID: 5, Region: "11110", Clinic: "a", Earliest: DateOf(day0.AddDate(0, 0, 1))},
	}
	got := Plan(inv, regs, []int{0, 1, 2, 3, 4}, 0, nil)
	type slot struct{ day, band int }
	want := []slot{{1, 0}, {1, 1}, {0, 0}, {2, 0}, {2, 1}}
	for k, w := range want {
		require.True(t, got[k].Assigned())
		_, d, b := inv.slotOf(int(got[k].Slot))
		require.Equal(t, w, slot{d, b}, "registration %d", got[k].Registration)
	}
}

func TestPlanRespectsUsedCapacity(t *testing.T) {
	t.Parallel()
	clinics := []Clinic{{ID: "a", Region: "11110"}, {ID: "b", Region: "11110"}}
	inv := inventory(2, 1, clinics, []int32{3, 3})
	inv.Used[0] = 3 // a, day 0: full
	inv.Used[2] = 2 // b, day 0: one left
	regs := make([]Registration, 10)
	order := make([]int, 10)
	for i := range regs {
		regs[i] = Registration{ID: int64(i + 1), Region: "11110"}
		order[i] = i
	}
	got := Plan(inv, regs, order, 0, nil)
	per := make([]int32, len(inv.Capacity))
	assigned := 0
	for _, o := range got {
		if o.Assigned() {
			per[o.Slot]++
			assigned++
		}
	}
	require.Equal(t, 7, assigned, "1 + 3 + 3 places were free")
	for s := range per {
		require.LessOrEqual(t, per[s]+inv.Used[s], inv.Capacity[s], "slot %d over capacity", s)
	}
}

func TestDrawOrder(t *testing.T) {
	t.Parallel()
	regs := make([]Registration, 1000)
	for i := range regs {
		regs[i] = Registration{ID: int64(i + 1)}
	}
	a := DrawOrder([]byte("seed one, thirty-two bytes long!"), regs)
	require.Equal(t, a, DrawOrder([]byte("seed one, thirty-two bytes long!"), regs), "the same seed draws the same order")
	b := DrawOrder([]byte("seed two, thirty-two bytes long!"), regs)
	require.NotEqual(t, a, b, "another seed draws another order")
	for k := 1; k < len(a); k++ {
		ka, kb := DrawKey([]byte("seed one, thirty-two bytes long!"), regs[a[k-1]].ID), DrawKey([]byte("seed one, thirty-two bytes long!"), regs[a[k]].ID)
		require.Less(t, string(ka[:]), string(kb[:]), "drawn in ascending order of keys")
	}
}

// DrawOrder sorts on the keys' first words; the order must be exactly that
// of the whole keys' bytes, then of the ids, as the published rule says.
func TestDrawOrderIsTheKeysOrder(t *testing.T) {
	t.Parallel()
	seed := []byte("seed one, thirty-two bytes long!")
	regs := make([]Registration, 5000)
	for i := range regs {
		regs[i] = Registration{ID: int64(i*7919%100_003 + 1)}
	}
	want := make([]int, len(regs))
	for i := range want {
		want[i] = i
	}
	slices.SortFunc(want, func(a, b int) int {
		ka, kb := DrawKey(seed, regs[a].ID), DrawKey(seed, regs[b].ID)
		return cmp.Or(bytes.Compare(ka[:], kb[:]), cmp.Compare(regs[a].ID, regs[b].ID))
	})
	require.Equal(t, want, DrawOrder(seed, regs))
}

// Two keys whose first words tie are told apart by the rest of their bytes.
func TestCompareDrawnTies(t *testing.T) {
	t.Parallel()
	seed := []byte("seed one, thirty-two bytes long!")
	regs := []Registration{{ID: 10}, {ID: 20}}
	k0, k1 := DrawKey(seed, 10), DrawKey(seed, 20)
	want := bytes.Compare(k0[:], k1[:])
	require.NotZero(t, want)
	same := uint64(42) // as if both keys began with the same eight bytes
	require.Equal(t, want, compareDrawn(seed, regs, drawn{first: same, i: 0}, drawn{first: same, i: 1}))
	require.Equal(t, -want, compareDrawn(seed, regs, drawn{first: same, i: 1}, drawn{first: same, i: 0}))
	require.Equal(t, -1, compareDrawn(seed, regs, drawn{first: 1, i: 1}, drawn{first: 2, i: 0}), "the first words decide when they differ")
}

// BenchmarkPlan plans 200,000 registrations, drawn by lottery, over 14,000
// clinics in 250 regions × 14 days × 3 bands: the in-memory part of a run.
func BenchmarkPlan(b *testing.B) {
	const clinics, regions, n = 14_000, 250, 200_000
	var cl []Clinic
	for c := range clinics {
		r := c % regions
		cl = append(cl, Clinic{ID: fmt.Sprintf("c-%05d", c), Region: fmt.Sprintf("%05d", 10000+r),
			Lat: 33 + float64(r%25)/5, Lng: 126 + float64(r/25)/3})
	}
	slices.SortFunc(cl, func(a, b Clinic) int { return strings.Compare(a.ID, b.ID) })
	capacity := make([]int32, clinics)
	for c := range capacity {
		capacity[c] = int32(3 + c%10)
	}
	regs := make([]Registration, n)
	for i := range regs {
		regs[i] = Registration{ID: int64(i + 1), Region: fmt.Sprintf("%05d", 10000+i%regions)}
		if i%3 == 0 {
			regs[i].Clinic = cl[i%clinics].ID
		}
	}
	seed := []byte("benchmark seed, thirty-two bytes")
	for b.Loop() {
		inv := inventory(14, 3, cl, capacity)
		Plan(inv, regs, DrawOrder(seed, regs), 0, nil)
	}
}
