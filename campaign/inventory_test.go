package campaign_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
)

func TestInventory(t *testing.T) {
	t.Parallel()
	inv := campaign.Inventory(campaign.InventoryConfig{Seed: 1})
	require.Len(t, inv, campaign.DefaultClinics)
	require.Equal(t, inv, campaign.Inventory(campaign.InventoryConfig{Seed: 1}), "the same seed must give the same inventory")
	require.NotEqual(t, inv, campaign.Inventory(campaign.InventoryConfig{Seed: 2}), "another seed must give another inventory")

	perRegion := map[string]int{}
	ids := map[string]bool{}
	for _, c := range inv {
		require.False(t, ids[c.ID], "clinic id %s twice", c.ID)
		ids[c.ID] = true
		perRegion[c.Region]++
		r, ok := region.ByCode(c.Region)
		require.True(t, ok, "clinic %s in unknown region %s", c.ID, c.Region)
		require.Less(t, region.DistanceKm(r.Lat, r.Lng, c.Lat, c.Lng), 5.0, "clinic %s is far from its region's centre", c.ID)
		require.Positive(t, c.Capacity)
		require.Contains(t, c.Address, r.Name, "clinic %s's address names its region", c.ID)
		require.Contains(t, c.Name, r.Name)
	}
	regions := region.All()
	require.Len(t, perRegion, len(regions), "every region has a clinic")

	// In proportion to population: the most populous region has about its
	// share of the clinics beyond the one each region gets.
	total := 0
	big := regions[0]
	for _, r := range regions {
		total += r.Population
		if r.Population > big.Population {
			big = r
		}
	}
	want := 1 + float64(campaign.DefaultClinics-len(regions))*float64(big.Population)/float64(total)
	require.InDelta(t, want, float64(perRegion[big.Code]), 1.0, "clinics of %s", big.Name)
}

func TestInventorySizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		clinics int
	}{{"fewer than regions", 10}, {"one per region", 252}, {"small", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Len(t, campaign.Inventory(campaign.InventoryConfig{Seed: 7, Clinics: tc.clinics}), tc.clinics)
		})
	}
	scaled := campaign.Inventory(campaign.InventoryConfig{Seed: 7, Clinics: 300, CapacityScale: 2})
	plain := campaign.Inventory(campaign.InventoryConfig{Seed: 7, Clinics: 300})
	for i := range plain {
		require.Equal(t, plain[i].Capacity*2, scaled[i].Capacity)
	}
}
