package sim

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
)

// phonePeople maps each phone the accepted submissions give (normalised)
// to the people given it for, and tells which phones are bots'.
func phonePeople(tb testing.TB, subs []Submission) (people map[string]map[int]bool, bots map[string]bool) {
	tb.Helper()
	people, bots = map[string]map[int]bool{}, map[string]bool{}
	for _, s := range subs {
		if s.Want.Status != http.StatusAccepted || s.Want.Kind != "" {
			continue
		}
		var body struct {
			Phone string `json:"phone"`
		}
		require.NoError(tb, json.Unmarshal(s.Body, &body))
		p := NormalizePhone(body.Phone)
		if people[p] == nil {
			people[p] = map[int]bool{}
		}
		people[p][s.Person] = true
		if s.Class == ClassBot && s.Bot%2 == 0 {
			bots[p] = true
		}
	}
	return people, bots
}

// TestSurgePhones checks the phone cap in the truth: relatives share
// phones, but only the bots that rotate device ids go over the cap, each
// with one phone of its own.
func TestSurgePhones(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 3, 4000)
	people, bots := phonePeople(t, w.surge.Submissions)
	require.NotEmpty(t, bots)
	shared := 0
	for p, ps := range people {
		if bots[p] {
			require.Greater(t, len(ps), w.c.PhoneCap(), "a rotating bot gives its phone for more people than the cap")
			continue
		}
		require.LessOrEqual(t, len(ps), w.c.PhoneCap(), "only bots go over the phone cap")
		if len(ps) > 1 {
			shared++
		}
	}
	require.Positive(t, shared, "relatives share phones")
	// With a cap smaller than a family's shared phone, the members past it
	// give a phone of their own: still only bots go over it.
	spec := w.c.Spec
	spec.Limits = &campaign.FileLimits{PhoneCap: 1}
	c, err := campaign.FromFile(spec)
	require.NoError(t, err)
	s, err := NewSurge(w.surge.Population, SurgeConfig{Submissions: 4000, Seed: 3, Campaign: c, Providers: w.idps, Now: testNow})
	require.NoError(t, err)
	people, bots = phonePeople(t, s.Submissions)
	for p, ps := range people {
		if !bots[p] {
			require.LessOrEqual(t, len(ps), 1, "only bots go over a phone cap of 1")
		}
	}
	e := s.Truth().Expected()
	require.Equal(t, e.Registered, e.Persons)
}
