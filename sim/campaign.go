package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/prereg/prereg/campaign"
)

// The demo campaign: the 9 August 2021 round's cohort, with windows laid
// out around the moment the demo starts so that most digits are open and
// two are not (their submissions are the surge's out-of-window 403s).
const (
	DemoCampaignID = "demo-18-49"
	DemoDeviceCap  = 4
	DemoShards     = 16
	// DemoOpenFor is how long the open window stays open after the demo
	// starts (long enough for `prereg dev` to be used for a day).
	DemoOpenFor = 24 * time.Hour
)

// DemoOpenDigits are the birth-date digits open when the demo starts;
// DemoClosedDigits open a day later.
var (
	DemoOpenDigits   = []int{0, 1, 2, 3, 4, 5, 6, 7}
	DemoClosedDigits = []int{8, 9}
)

// DemoCohort is the demo's cohort: born 1972-01-01 to 2003-12-31 (ages
// 18–49 in 2021), which holds eight 29 Februaries.
func DemoCohort() campaign.Cohort {
	return campaign.Cohort{
		BornFrom: time.Date(1972, 1, 1, 0, 0, 0, 0, time.UTC),
		BornTo:   time.Date(2003, 12, 31, 0, 0, 0, 0, time.UTC),
	}
}

// DemoTokenSecret is the token secret of a demo identity provider, and
// DemoCISecret the CI secret every demo provider shares: `prereg demo`,
// `prereg sim idp` and `prereg loadgen` agree on them without being told.
// They are for the simulated world only.
func DemoTokenSecret(provider string) []byte { return []byte("prereg-demo-idp-token:" + provider) }

// DemoCISecret is the national CI secret of the simulated world.
var DemoCISecret = []byte("prereg-demo-idp-ci")

// DemoCampaign builds the demo campaign around now: window "open" admits
// DemoOpenDigits from 10 minutes before now for DemoOpenFor; window "next"
// admits DemoClosedDigits the day after; a catch-up window follows. One
// provider per entry of providerURLs (name → base URL); the clinics as
// given. The campaign goes through campaign.FromFile, so Spec is set and it
// can be stored like any loaded campaign.
func DemoCampaign(now time.Time, providerURLs map[string]string, clinics []campaign.Clinic) (*campaign.Campaign, error) {
	return DemoCampaignOpenFor(now, DemoOpenFor, providerURLs, clinics)
}

// DemoCampaignOpenFor is DemoCampaign with window "open" closing openFor
// after now (DemoOpenFor when 0): `prereg dev --open-for` closes it within
// minutes, so that one window can be followed to its published round.
func DemoCampaignOpenFor(now time.Time, openFor time.Duration, providerURLs map[string]string, clinics []campaign.Clinic) (*campaign.Campaign, error) {
	if openFor <= 0 {
		openFor = DemoOpenFor
	}
	if len(providerURLs) == 0 {
		return nil, fmt.Errorf("sim: demo campaign: no identity provider")
	}
	now = now.UTC().Truncate(time.Second)
	at := func(t time.Time) string { return t.Format(time.RFC3339) }
	opens := now.Add(-10 * time.Minute)
	nextOpens := now.Add(openFor)
	cohort := DemoCohort()
	f := campaign.File{
		ID:       DemoCampaignID,
		Name:     "Demo: COVID-19 vaccination, ages 18-49",
		Timezone: campaign.DefaultTimezone,
		Cohort: campaign.FileCohort{
			BornFrom: cohort.BornFrom.Format("2006-01-02"),
			BornTo:   cohort.BornTo.Format("2006-01-02"),
		},
		Windows: []campaign.FileWindow{
			{ID: "open", Opens: at(opens), Closes: at(nextOpens), Digits: DemoOpenDigits},
			{ID: "next", Opens: at(nextOpens), Closes: at(nextOpens.Add(24 * time.Hour)), Digits: DemoClosedDigits},
			{ID: "catch-up", Opens: at(nextOpens.Add(24 * time.Hour)), Closes: at(nextOpens.Add(72 * time.Hour)), CatchUp: true},
		},
		Shards:    DemoShards,
		DeviceCap: DemoDeviceCap,
		Dedupe:    campaign.FileDedupe{BloomFPRate: 0.001, ExpectedPeople: 1_000_000},
		Schedule: campaign.FileSchedule{
			Start: now.AddDate(0, 0, 3).Format("2006-01-02"),
			Days:  14,
			Bands: []string{"09:00-12:00", "13:00-15:00", "15:00-18:00"},
		},
		// Fast enough that the demo's SMS drain in seconds, not minutes.
		Notify: campaign.FileNotify{Rate: 5000, StatusURL: "http://127.0.0.1:8080/", Language: "ko"},
	}
	names := make([]string, 0, len(providerURLs))
	for name := range providerURLs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f.Providers = append(f.Providers, campaign.FileProvider{Name: name, URL: providerURLs[name], Timeout: "2s", Concurrency: 64})
	}
	for _, c := range clinics {
		f.Clinics = append(f.Clinics, campaign.FileClinic{ID: c.ID, Name: c.Name, Region: c.Region, Lat: c.Lat, Lng: c.Lng, Capacity: c.Capacity, Address: c.Address})
	}
	c, err := campaign.FromFile(f)
	if err != nil {
		return nil, fmt.Errorf("sim: demo campaign: %w", err)
	}
	return c, nil
}

// ConfiguredIdP is the simulated provider name, signing with idpSecret and
// ciSecret (PREREG_SIM_IDP_SECRET and PREREG_SIM_CI_SECRET) or, where one
// is empty, the demo's, so that `prereg sim idp` and `prereg loadgen`
// agree on the tokens they sign and accept.
func ConfiguredIdP(name, idpSecret, ciSecret string) *IdP {
	token, ci := DemoTokenSecret(name), DemoCISecret
	if idpSecret != "" {
		token = []byte(idpSecret)
	}
	if ciSecret != "" {
		ci = []byte(ciSecret)
	}
	return NewIdP(name, token, ci)
}
