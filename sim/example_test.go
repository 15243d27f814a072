package sim_test

import (
	"fmt"
	"time"

	"github.com/prereg/prereg/sim"
)

// The demo's wiring: a campaign around now, a population sized for the
// surge, the surge with its truth, and what a correct system must make of
// it. RunLoad sends it; Truth().Score compares the answers and the
// decisions read back from the database with the truth.
func ExampleNewSurge() {
	now := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	idps := map[string]*sim.IdP{"pass": sim.NewIdP("pass", sim.DemoTokenSecret("pass"), sim.DemoCISecret)}
	c, err := sim.DemoCampaign(now, map[string]string{"pass": "http://127.0.0.1:9101"}, nil)
	if err != nil {
		panic(err)
	}
	pop, err := sim.NewPopulation(1, sim.PeopleFor(1000, c, now), c.Cohort)
	if err != nil {
		panic(err)
	}
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: 1000, Seed: 1, Campaign: c, Providers: idps, Now: now})
	if err != nil {
		panic(err)
	}
	e := surge.Truth().Expected()
	fmt.Println("submissions:", e.Submitted, "statuses:", e.Status)
	fmt.Println("accepted:", e.Accepted, "persons:", e.Persons, "rejected:", e.RejectedBy)
	fmt.Println("duplicate or held:", e.DuplicateOrHeld)
	// Output:
	// submissions: 1000 statuses: map[202:890 400:40 403:70]
	// accepted: 840 persons: 400 rejected: map[birthdate_mismatch:30 invalid_token:10]
	// duplicate or held: 400
}
