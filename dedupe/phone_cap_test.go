package dedupe_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
)

const phoneCapYAML = `
id: test-phone-cap
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: d9, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [9]}
providers:
  - {name: pass, url: "http://127.0.0.1:9101"}
shards: 4
limits: {phone_cap: %d}
schedule: {start: 2021-08-26, days: 14}
`

// phoneOutcome is a verified outcome of person from a device of their
// own, giving phone (a keyed hash, as verify makes it).
func phoneOutcome(c *campaign.Campaign, receipt, person, phone string) prereg.Outcome {
	return prereg.Outcome{
		Receipt: receipt, Campaign: c.ID, Window: "d9", Provider: "pass", Verdict: prereg.VerdictVerified,
		IdentityKey: key("person", person), DeviceKey: key("device", receipt), PhoneKey: phone,
		Birthdate: "1990-08-19", ClaimedBirthdate: "1990-08-19", Region: "11680",
		Phone:      prereg.Sealed{KeyID: "k1", Data: []byte("sealed-" + receipt)},
		ReceivedAt: time.Date(2021, 8, 9, 11, 0, 0, 0, time.UTC),
	}
}

// TestPhoneCapHoldsAcrossWorkers: a bot gives one phone for 40 people,
// each from a device id of its own (so the device cap never sees more
// than one person), and four workers, one per shard, decide them at once.
// Exactly the cap of them is registered and the rest held phone_cap;
// each of those people then registers with a phone of their own; a
// cancelled registration frees its slot for the next person, and an
// operator's release takes one past the cap.
func TestPhoneCapHoldsAcrossWorkers(t *testing.T) {
	t.Parallel()
	const phoneCap, people = 3, 40
	e := setup(t)
	c, err := campaign.Parse(fmt.Appendf(nil, phoneCapYAML, phoneCap), "")
	require.NoError(t, err)
	_, err = e.campaigns.Load(context.Background(), c)
	require.NoError(t, err)
	botPhone := key("phone", "bot")
	w := &world{campaign: c}
	for i := range people {
		w.outcomes = append(w.outcomes, phoneOutcome(c, fmt.Sprintf("bot-%02d", i), fmt.Sprint(i), botPhone))
	}
	w.publish(t, e.js.JS)
	for shard := range c.Shards {
		e.startWorker(t, e.js.JS, dedupe.Config{Shards: []int{shard}, BatchSize: 4})
	}
	e.waitDecisions(t, c.ID, people)
	ds := e.decisions(t, c.ID)
	kinds := map[decided]int{}
	for _, d := range ds {
		kinds[decided{Kind: d.Kind, Reason: d.Reason}]++
	}
	require.Equal(t, map[decided]int{
		{Kind: prereg.KindRegistered}:                          phoneCap,
		{Kind: prereg.KindHeld, Reason: prereg.ReasonPhoneCap}: people - phoneCap,
	}, kinds, "exactly the cap registered with one phone, whichever worker decides")
	require.Equal(t, phoneCap, slots(t, e, c.ID, botPhone))

	// The held people register with their own phones: the cap costs a
	// person nothing but the bot's phone.
	var own []prereg.Outcome
	for i := range people {
		own = append(own, phoneOutcome(c, fmt.Sprintf("own-%02d", i), fmt.Sprint(i), key("phone", fmt.Sprint(i))))
	}
	w.outcomes = own
	w.publish(t, e.js.JS)
	e.waitDecisions(t, c.ID, 2*people)
	require.Len(t, e.registrations(t, c.ID), people, "every person registered once")

	// A registration that ends frees its phone's slot.
	var freed string
	require.NoError(t, e.db.Pool.QueryRow(context.Background(),
		`SELECT identity_key FROM phone_people WHERE campaign = $1 AND phone_key = $2 LIMIT 1`, c.ID, botPhone).Scan(&freed))
	tx, err := e.db.Pool.Begin(context.Background())
	require.NoError(t, err)
	n, err := postgres.FreePhoneSlot(context.Background(), tx, c.ID, freed)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.NoError(t, tx.Commit(context.Background()))
	w.outcomes = []prereg.Outcome{
		phoneOutcome(c, "late-1", "late-1", botPhone),
		phoneOutcome(c, "late-2", "late-2", botPhone),
	}
	w.publish(t, e.js.JS)
	e.waitDecisions(t, c.ID, 2*people+2)
	ds = e.decisions(t, c.ID)
	// Two workers may decide them in either order: one takes the freed
	// slot, the other is held.
	late := []decided{{Kind: ds["late-1"].Kind, Reason: ds["late-1"].Reason}, {Kind: ds["late-2"].Kind, Reason: ds["late-2"].Reason}}
	require.ElementsMatch(t, []decided{{Kind: prereg.KindRegistered}, {Kind: prereg.KindHeld, Reason: prereg.ReasonPhoneCap}}, late, "one takes the freed slot")
	require.Equal(t, phoneCap, slots(t, e, c.ID, botPhone))
	heldLate := "late-1"
	if ds["late-2"].Kind == prereg.KindHeld {
		heldLate = "late-2"
	}

	// An operator's release registers a held person and takes the phone's
	// slot, past the cap: the review is the exception.
	res, err := e.store.ReviewHeld(context.Background(), heldLate, dedupe.ReviewReleased, "operator", time.Now())
	require.NoError(t, err)
	require.False(t, res.AlreadyRegistered)
	require.Equal(t, phoneCap+1, slots(t, e, c.ID, botPhone))
}

// slots is the number of people registered with a phone.
func slots(tb testing.TB, e *env, campaignID, phone string) int {
	tb.Helper()
	var n int
	require.NoError(tb, e.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM phone_people WHERE campaign = $1 AND phone_key = $2`, campaignID, phone).Scan(&n))
	return n
}
