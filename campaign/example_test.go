package campaign_test

import (
	"bytes"
	"encoding/csv"
	"flag"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
)

var update = flag.Bool("update", false, "rewrite the example campaign's clinics file from campaign.Inventory")

// exampleClinics is the example campaign's clinics file, and the
// inventory it is generated with: Korea's 2021 count of vaccination sites
// (campaign.DefaultClinics), with capacities scaled so that the schedule
// (14 days × 3 bands) has room for about 19.5 million people, the 18-49
// cohort (docs/CAMPAIGN.md, "The example campaign").
const exampleClinics = "../campaigns/covid-2021-18-49-clinics.csv"

var exampleInventory = campaign.InventoryConfig{Seed: 2021, Clinics: campaign.DefaultClinics, CapacityScale: 3.4}

// TestExampleCampaignClinics checks that the committed clinics file is
// what the generator makes; `go test ./campaign -run ExampleCampaignClinics
// -update` writes it again.
func TestExampleCampaignClinics(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	require.NoError(t, w.Write([]string{"id", "name", "region", "lat", "lng", "capacity", "address"}))
	for _, c := range campaign.Inventory(exampleInventory) {
		require.NoError(t, w.Write([]string{c.ID, c.Name, c.Region,
			strconv.FormatFloat(c.Lat, 'f', -1, 64), strconv.FormatFloat(c.Lng, 'f', -1, 64),
			strconv.Itoa(c.Capacity), c.Address}))
	}
	w.Flush()
	require.NoError(t, w.Error())
	if *update {
		require.NoError(t, os.WriteFile(exampleClinics, b.Bytes(), 0o644))
	}
	got, err := os.ReadFile(exampleClinics)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b.Bytes(), got), "%s is not what campaign.Inventory makes: run go test ./campaign -run ExampleCampaignClinics -update", exampleClinics)
}

// TestExampleCampaignInventory checks the loaded example campaign: every
// region has clinics, and the schedule has room for the cohort.
func TestExampleCampaignInventory(t *testing.T) {
	t.Parallel()
	c, err := campaign.LoadFile("../campaigns/covid-2021-18-49.yaml")
	require.NoError(t, err)
	perRegion := map[string]int{}
	places := 0
	for _, cl := range c.Clinics {
		perRegion[cl.Region]++
		places += cl.Capacity * c.Schedule.Days * len(c.Schedule.Bands)
		require.NotEmpty(t, cl.Address, cl.ID)
	}
	for _, r := range region.All() {
		require.Positive(t, perRegion[r.Code], "region %s %s has no clinic", r.Code, r.Name)
	}
	require.Len(t, perRegion, len(region.All()))
	require.GreaterOrEqual(t, places, c.Dedupe.ExpectedPeople, "room for the cohort")
	require.Less(t, places, c.Dedupe.ExpectedPeople*12/10, "not far beyond it")
	require.InDelta(t, campaign.DefaultMaxDistanceKm, c.Allocation.MaxDistanceKm, 0)
}
