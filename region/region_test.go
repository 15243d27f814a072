package region_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/region"
)

func TestAll(t *testing.T) {
	t.Parallel()
	rs := region.All()
	require.Len(t, rs, 252)
	total := 0
	for i, r := range rs {
		require.Len(t, r.Code, 5, "region %d", i)
		if i > 0 {
			require.Less(t, rs[i-1].Code, r.Code, "sorted by code, no code twice")
		}
		require.NotEmpty(t, r.Name, r.Code)
		require.Positive(t, r.Population, "%s has people after the gaps are filled", r.Code)
		require.InDelta(t, 36, r.Lat, 3.5, "%s lies in South Korea", r.Code)
		require.InDelta(t, 128, r.Lng, 3.5, "%s lies in South Korea", r.Code)
		total += r.Population
	}
	// The source's own national total for 2021-12, give or take the
	// rounding of the shares given to the regions without a population.
	require.InDelta(t, 51638809, total, 5)
}

func TestByCodeAndKnown(t *testing.T) {
	t.Parallel()
	r, ok := region.ByCode("11680")
	require.True(t, ok)
	require.Equal(t, "서울특별시", r.Sido)
	require.Equal(t, "강남구", r.Name)
	require.True(t, r.HasCentre)
	require.True(t, region.Known("11680"))

	b, ok := region.ByCode("41192")
	require.True(t, ok, "Bucheon's re-created gu are regions")
	require.False(t, b.HasCentre, "the source has no boundary for it")
	require.NotZero(t, b.Lat, "it borrows the city's centre")

	for _, code := range []string{"", "99999", "1168", "41190"} {
		_, ok := region.ByCode(code)
		require.False(t, ok, "code %q", code)
		require.False(t, region.Known(code), "code %q", code)
	}
}

func TestDistanceKm(t *testing.T) {
	t.Parallel()
	// Seoul City Hall to Busan City Hall: about 325 km.
	require.InDelta(t, 325, region.DistanceKm(37.5663, 126.9779, 35.1798, 129.0750), 5)
	require.Zero(t, region.DistanceKm(37.5, 127, 37.5, 127))
}
