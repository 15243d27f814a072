package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
)

// testNow is a fixed demo start, so that every run sees the same windows.
var testNow = time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)

// world is a demo campaign, its providers and a surge of n submissions.
type world struct {
	c     *campaign.Campaign
	idps  map[string]*IdP
	surge *Surge
}

func newWorld(tb testing.TB, seed int64, n int) world {
	tb.Helper()
	w := world{idps: map[string]*IdP{
		"pass":  NewIdP("pass", DemoTokenSecret("pass"), DemoCISecret),
		"kakao": NewIdP("kakao", DemoTokenSecret("kakao"), DemoCISecret),
	}}
	clinics := Inventory(InventoryConfig{Seed: 1, Clinics: 300})
	c, err := DemoCampaign(testNow, map[string]string{"pass": "http://127.0.0.1:9101", "kakao": "http://127.0.0.1:9102"}, clinics)
	require.NoError(tb, err)
	w.c = c
	pop, err := NewPopulation(seed, PeopleFor(n, c, testNow), c.Cohort)
	require.NoError(tb, err)
	w.surge, err = NewSurge(pop, SurgeConfig{Submissions: n, Seed: seed, Campaign: c, Providers: w.idps, Now: testNow})
	require.NoError(tb, err)
	return w
}

var (
	worldsMu sync.Mutex
	worlds   = map[[2]int64]*world{}
)

// sharedWorld is newWorld made once per (seed, n) for the whole package's
// tests, which only read it: generating surges is most of their time
// under -race.
func sharedWorld(tb testing.TB, seed int64, n int) world {
	tb.Helper()
	worldsMu.Lock()
	defer worldsMu.Unlock()
	k := [2]int64{seed, int64(n)}
	if w, ok := worlds[k]; ok {
		return *w
	}
	w := newWorld(tb, seed, n)
	worlds[k] = &w
	return w
}

func TestDemoCampaign(t *testing.T) {
	t.Parallel()
	c, err := DemoCampaign(testNow, map[string]string{"pass": "http://127.0.0.1:9101"}, nil)
	require.NoError(t, err)
	require.Equal(t, DemoCampaignID, c.ID)
	require.Equal(t, DemoDeviceCap, c.DeviceCap)
	require.Equal(t, DemoShards, c.Shards)
	require.Equal(t, c.ID, c.Spec.ID, "validated through campaign.FromFile")
	for d := 1; d <= 31; d++ {
		birth := time.Date(1990, time.January, d, 0, 0, 0, 0, time.UTC)
		w, open := c.OpenWindow(birth, testNow)
		closed := campaign.Digit(birth) >= 8
		require.Equal(t, !closed, open, "day %d", d)
		if open {
			require.Equal(t, "open", w.ID)
		} else {
			next, ok := c.NextWindow(birth, testNow)
			require.True(t, ok, "a closed digit has a next window")
			require.Equal(t, "next", next.ID)
		}
	}
	_, err = DemoCampaign(testNow, nil, nil)
	require.Error(t, err)
}

func TestSurgeDeterministic(t *testing.T) {
	t.Parallel()
	a := newWorld(t, 11, 2000).surge
	b := newWorld(t, 11, 2000).surge
	require.Len(t, b.Submissions, len(a.Submissions))
	for i := range a.Submissions {
		x, y := a.Submissions[i], b.Submissions[i]
		require.True(t, bytes.Equal(x.Body, y.Body) && x.Class == y.Class && x.IdempotencyKey == y.IdempotencyKey && x.Want == y.Want,
			"submission %d differs between two surges of the same seed", i)
	}
	c := newWorld(t, 12, 2000).surge
	same := 0
	for i := range a.Submissions {
		if bytes.Equal(a.Submissions[i].Body, c.Submissions[i].Body) {
			same++
		}
	}
	require.Less(t, same, 10, "another seed must give another surge")
}

func TestMixCounts(t *testing.T) {
	t.Parallel()
	sum := 0.0
	for _, m := range Mix {
		sum += m.Share
	}
	require.InDelta(t, 1.0, sum, 1e-9, "the shares add up to 1")
	for _, n := range []int{1, 7, 100, 2999, 100000} {
		got := MixCounts(n)
		total := 0
		for _, m := range Mix {
			total += got[m.Class]
			require.InDelta(t, m.Share*float64(n), float64(got[m.Class]), 1, "%s of %d", m.Class, n)
		}
		require.Equal(t, n, total)
	}
}

func TestSurgeMix(t *testing.T) {
	t.Parallel()
	for _, seed := range []int64{1, 2} {
		w := sharedWorld(t, seed, 4000)
		s := w.surge
		require.Len(t, s.Submissions, 4000)
		require.Equal(t, MixCounts(4000), s.Counts(), "the surge holds exactly the fixed mix")

		e := s.Truth().Expected()
		require.Equal(t, MixCounts(4000)[ClassFirst], e.Persons, "one person per first")
		require.InDelta(t, 2.5, float64(len(s.Submissions))/float64(e.Persons), 0.01, "submissions per person")
		require.Positive(t, e.Held, "bots go over the cap")
		require.Equal(t, e.Rejected, MixCounts(4000)[ClassWindowJump]+MixCounts(4000)[ClassForged])

		// Sorted, numbered, and the retries point back.
		for i, sub := range s.Submissions {
			require.Equal(t, i, sub.Seq)
			if sub.Class == ClassRetry {
				orig := s.Submissions[sub.RetryOf]
				require.Equal(t, ClassFirst, orig.Class)
				require.NotEmpty(t, sub.IdempotencyKey)
				require.Equal(t, orig.IdempotencyKey, sub.IdempotencyKey)
				require.Equal(t, orig.Body, sub.Body, "a retry is byte for byte its original")
				require.Equal(t, orig.Device, sub.Device)
			} else {
				require.Equal(t, -1, sub.RetryOf)
			}
		}
	}
}

// TestSurgeAgainstIntake checks each submission's expected answer against
// intake's own decoder and validator and the campaign's windows.
func TestSurgeAgainstIntake(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 1, 4000)
	variants := map[string]bool{}
	for _, s := range w.surge.Submissions {
		req, err := intake.DecodeRequest(s.Body)
		if err == nil {
			_, err = intake.Validate(req, w.c)
		}
		if s.Want.Status == http.StatusBadRequest {
			require.Error(t, err, "submission %d (%s) must be a 400", s.Seq, s.Class)
			var fe intake.FieldErrors
			require.True(t, errors.As(err, &fe))
			for k := range fe {
				variants[k] = true
			}
			continue
		}
		require.NoError(t, err, "submission %d (%s) must pass validation", s.Seq, s.Class)
		birth, _ := campaign.ParseDate(req.Birthdate)
		win, open := w.c.OpenWindow(birth, testNow)
		switch s.Want.Status {
		case http.StatusAccepted:
			require.True(t, open, "submission %d (%s): its digit must be open", s.Seq, s.Class)
			require.Equal(t, win.ID, s.Want.Window)
		case http.StatusForbidden:
			require.False(t, open, "submission %d (%s): its digit must be closed", s.Seq, s.Class)
		default:
			t.Fatalf("submission %d: unexpected status %d", s.Seq, s.Want.Status)
		}
		require.Equal(t, s.Device, req.DeviceID)
		require.LessOrEqual(t, len(s.IdempotencyKey), 128)
	}
	for _, f := range []string{"body", "birthdate", "phone", "region", "identity_token", "provider", "referrer"} {
		require.True(t, variants[f], "a malformed request with a bad %s", f)
	}
}

func TestSurgeTokens(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 2, 4000)
	pop := w.surge.Population
	ci := map[int]string{}
	for _, s := range w.surge.Submissions {
		if s.Class == ClassMalformed {
			continue
		}
		var body struct {
			Provider      string `json:"provider"`
			IdentityToken string `json:"identity_token"`
			Birthdate     string `json:"birthdate"`
			DeviceID      string `json:"device_id"`
		}
		require.NoError(t, json.Unmarshal(s.Body, &body))
		claims, err := w.idps[body.Provider].Verify(body.IdentityToken)
		if s.Class == ClassForged {
			require.ErrorIs(t, err, ErrInvalidToken, "a forged token must fail")
			for _, p := range w.idps {
				_, err := p.Verify(body.IdentityToken)
				require.ErrorIs(t, err, ErrInvalidToken)
			}
			continue
		}
		require.NoError(t, err, "submission %d (%s): the provider must accept its token", s.Seq, s.Class)
		x := pop.People[s.Person]
		require.Equal(t, x.BirthdateString(), claims.Birthdate, "a token carries the true birth date")
		require.Equal(t, x.E164(), claims.Phone)
		require.Equal(t, body.DeviceID, claims.Device, "a token is issued for the device that sends it")
		if prev, ok := ci[s.Person]; ok {
			require.Equal(t, prev, claims.Person, "one person, one CI, whatever the device or provider")
		}
		ci[s.Person] = claims.Person
		if s.Class == ClassWindowJump {
			require.NotEqual(t, claims.Birthdate, body.Birthdate, "a window jump claims another birth date")
		} else {
			require.Equal(t, claims.Birthdate, body.Birthdate)
		}
		// A tampered token fails.
		tampered := []byte(body.IdentityToken)
		tampered[len(tampered)-2] ^= 1
		_, err = w.idps[body.Provider].Verify(string(tampered))
		require.ErrorIs(t, err, ErrInvalidToken)
	}
	seen := map[string]int{}
	for p, id := range ci {
		q, dup := seen[id]
		require.False(t, dup, "people %d and %d share a CI", p, q)
		seen[id] = p
	}
}

// TestSurgeDevices checks the device cap in the truth: only bots go over it.
func TestSurgeDevices(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 3, 4000)
	people := map[string]map[int]bool{}
	bots := map[string]bool{}
	for _, s := range w.surge.Submissions {
		if s.Class == ClassMalformed || s.Class == ClassForged || s.Want.Status != http.StatusAccepted {
			continue
		}
		if people[s.Device] == nil {
			people[s.Device] = map[int]bool{}
		}
		people[s.Device][s.Person] = true
		if s.Class == ClassBot && s.Bot%2 == 1 {
			bots[s.Device] = true // a bot that keeps its device
		}
	}
	require.NotEmpty(t, bots)
	// The other bots make up a device id for each person: each such
	// device sends once.
	rotated := map[string]bool{}
	for _, s := range w.surge.Submissions {
		if s.Class == ClassBot && s.Bot%2 == 0 {
			require.False(t, rotated[s.Device], "a rotating bot's device sends once")
			rotated[s.Device] = true
			require.Len(t, people[s.Device], 1)
		}
	}
	require.NotEmpty(t, rotated)
	// Requests that pass validation, per device: only bots go over the
	// budget a per-device limit allows a person.
	requests := map[string]int{}
	for _, s := range w.surge.Submissions {
		if s.Class != ClassMalformed {
			requests[s.Device]++
		}
	}
	for d, n := range requests {
		if !bots[d] && !rotated[d] {
			require.LessOrEqual(t, n, DeviceBudget, "a device that is not a bot's sends at most the budget")
		}
	}
	for d, ps := range people {
		if rotated[d] {
			continue
		}
		if bots[d] {
			require.Greater(t, len(ps), w.c.DeviceCap, "a bot submits for more people than the cap")
			require.GreaterOrEqual(t, len(ps), BotMinPeople)
		} else {
			require.LessOrEqual(t, len(ps), w.c.DeviceCap, "only bots go over the cap")
		}
	}
	// A bot's people also submit themselves: the cap never costs a person
	// their registration.
	firsts := map[int]bool{}
	for _, s := range w.surge.Submissions {
		if s.Class == ClassFirst {
			firsts[s.Person] = true
		}
	}
	for _, s := range w.surge.Submissions {
		if s.Class == ClassBot {
			require.True(t, firsts[s.Person])
		}
	}
}

func TestSurgeErrors(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 6, 100)
	for _, tc := range []struct {
		name string
		cfg  SurgeConfig
	}{
		{"no campaign", SurgeConfig{Submissions: 10, Providers: w.idps}},
		{"no submissions", SurgeConfig{Campaign: w.c, Providers: w.idps}},
		{"missing provider", SurgeConfig{Submissions: 10, Campaign: w.c, Providers: map[string]*IdP{"pass": w.idps["pass"]}, Now: testNow}},
		{"population too small", SurgeConfig{Submissions: 100000, Campaign: w.c, Providers: w.idps, Now: testNow}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSurge(w.surge.Population, tc.cfg)
			require.Error(t, err)
		})
	}
	// A campaign with every digit open cannot give out-of-window 403s.
	all := w.c.Spec
	all.Windows = []campaign.FileWindow{{ID: "all", Opens: "2026-11-28T00:00:00Z", Closes: "2026-12-01T00:00:00Z", CatchUp: true}}
	c, err := campaign.FromFile(all)
	require.NoError(t, err)
	_, err = NewSurge(w.surge.Population, SurgeConfig{Submissions: 50, Campaign: c, Providers: w.idps, Now: testNow})
	require.Error(t, err)
}

// TestSurgeSizes: every size, down to one submission, gets exactly the
// mix from a population sized by PeopleFor.
func TestSurgeSizes(t *testing.T) {
	t.Parallel()
	w := sharedWorld(t, 6, 100)
	for _, n := range []int{1, 2, 3, 10, 37, 250} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			pop, err := NewPopulation(int64(n), PeopleFor(n, w.c, testNow), w.c.Cohort)
			require.NoError(t, err)
			s, err := NewSurge(pop, SurgeConfig{Submissions: n, Seed: int64(n), Campaign: w.c, Providers: w.idps, Now: testNow})
			require.NoError(t, err)
			require.Equal(t, MixCounts(n), s.Counts())
		})
	}
}
