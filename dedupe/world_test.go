package dedupe_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

const testCampaignYAML = `
id: test-dedupe
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: d9, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [9]}
  - {id: catch-up, opens: 2021-08-19 20:00, closes: 2021-08-21 18:00, catch_up: true}
providers:
  - {name: pass, url: "http://127.0.0.1:9101"}
shards: %d
device_cap: %d
dedupe: {bloom_fp_rate: 0.001, expected_people: %d}
schedule: {start: 2021-08-26, days: 14}
`

// loadCampaign stores a test campaign and returns it.
func loadCampaign(tb testing.TB, store *postgres.CampaignStore, shards, deviceCap, people int) *campaign.Campaign {
	tb.Helper()
	c, err := campaign.Parse(fmt.Appendf(nil, testCampaignYAML, shards, deviceCap, people), "")
	require.NoError(tb, err)
	_, err = store.Load(context.Background(), c)
	require.NoError(tb, err)
	return c
}

// role is what a device is in the synthetic truth.
type role int

const (
	roleOwn   role = iota // a person's own phone or PC
	roleProxy             // a relative's device, sending for a few people
	roleBot               // a device sending for many people
)

// world is a small synthetic population with its truth: who each
// submission is for and what kind of device sent it.
type world struct {
	campaign *campaign.Campaign
	people   []string        // identity keys
	devices  map[string]role // device key → role
	outcomes []prereg.Outcome
	// truth per receipt: the person (identity key, "" for rejected)
	person map[string]string
	// rejected receipts and their reasons
	rejected map[string]prereg.Reason
}

func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// newWorld generates n people. Each submits 1–4 times from their own one
// or two devices; some are also submitted for by a relative's device (a
// proxy, under the cap) or by a bot (far over the cap); a few submissions
// are rejected by verify; some resubmissions are claim_seen. Every person
// submits at least once from their own device, so every person must end
// with exactly one registration.
func newWorld(c *campaign.Campaign, seed uint64, n int) *world {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	w := &world{campaign: c, devices: map[string]role{}, person: map[string]string{}, rejected: map[string]prereg.Reason{}}
	type sub struct {
		person, device string
		claim          bool
	}
	var subs []sub
	own := map[string][]string{}
	for i := range n {
		p := key("person", strconv.FormatUint(seed, 10), strconv.Itoa(i))
		w.people = append(w.people, p)
		for j := range 1 + r.IntN(2) {
			d := key("device", p, strconv.Itoa(j))
			w.devices[d] = roleOwn
			own[p] = append(own[p], d)
		}
		for range 1 + r.IntN(4) {
			subs = append(subs, sub{person: p, device: own[p][r.IntN(len(own[p]))]})
		}
	}
	// Proxies: a relative's device sends for 2–3 people.
	for i := 0; i < n/10; i++ {
		d := key("proxy", strconv.FormatUint(seed, 10), strconv.Itoa(i))
		w.devices[d] = roleProxy
		for range 2 + r.IntN(2) {
			subs = append(subs, sub{person: w.people[r.IntN(n)], device: d})
		}
	}
	r.Shuffle(len(subs), func(i, j int) { subs[i], subs[j] = subs[j], subs[i] })
	// Bots: a device sends for 12 people, far over the cap, early in the
	// surge (before most of those people registered themselves).
	for i := 0; i < max(1, n/100); i++ {
		d := key("bot", strconv.FormatUint(seed, 10), strconv.Itoa(i))
		w.devices[d] = roleBot
		for range 12 {
			at := r.IntN(len(subs)/5 + 1)
			subs = append(subs[:at], append([]sub{{person: w.people[r.IntN(n)], device: d}}, subs[at:]...)...)
		}
	}
	// Claim-seen: a resubmission of the same claim (same person, same
	// device) after it was verified once.
	verified := map[[2]string]bool{}
	for i := range subs {
		k := [2]string{subs[i].person, subs[i].device}
		if verified[k] && r.IntN(3) == 0 {
			subs[i].claim = true
		}
		verified[k] = true
	}
	base := time.Date(2021, 8, 9, 11, 0, 0, 0, time.UTC)
	window := c.Windows[0].ID
	emit := func(o prereg.Outcome) {
		o.Campaign, o.Window, o.Provider = c.ID, window, "pass"
		o.ReceivedAt = base.Add(time.Duration(len(w.outcomes)) * 100 * time.Millisecond)
		o.DecidedAt = o.ReceivedAt.Add(time.Second)
		o.Phone = prereg.Sealed{KeyID: "k1", Data: []byte("sealed-" + o.Receipt)}
		o.Region = "11680"
		o.Birthdate, o.ClaimedBirthdate = "1990-08-19", "1990-08-19"
		w.outcomes = append(w.outcomes, o)
	}
	for i, s := range subs {
		receipt := fmt.Sprintf("r-%d-%06d", seed, i)
		w.person[receipt] = s.person
		verdict := prereg.VerdictVerified
		if s.claim {
			verdict = prereg.VerdictDuplicate
		}
		o := prereg.Outcome{Receipt: receipt, Verdict: verdict, IdentityKey: s.person, DeviceKey: s.device}
		if s.claim {
			o.Reason = prereg.ReasonClaimSeen
		}
		emit(o)
		// Now and then, a rejected submission (a bad token, a window jump).
		if r.IntN(20) == 0 {
			bad := fmt.Sprintf("x-%d-%06d", seed, i)
			reason := []prereg.Reason{prereg.ReasonInvalidToken, prereg.ReasonBirthdateMismatch, prereg.ReasonNotInCohort}[r.IntN(3)]
			w.rejected[bad] = reason
			ro := prereg.Outcome{Receipt: bad, Verdict: prereg.VerdictRejected, Reason: reason, DeviceKey: key("device", bad)}
			if reason == prereg.ReasonBirthdateMismatch {
				ro.IdentityKey = s.person
			}
			emit(ro)
		}
	}
	return w
}

// publish sends the world's outcomes on their shards' subjects, as verify
// would.
func (w *world) publish(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	ctx := context.Background()
	var futures []jetstream.PubAckFuture
	for _, o := range w.outcomes {
		k := o.IdentityKey
		if k == "" {
			k = o.Receipt
		}
		data, err := json.Marshal(o)
		require.NoError(tb, err)
		msg := &nats.Msg{Subject: stream.VerifiedSubject(prereg.Shard(k, w.campaign.Shards)), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, o.Receipt)
		f, err := js.PublishMsgAsync(msg)
		require.NoError(tb, err)
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		tb.Fatal("publish: no acks after 30s")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			require.NoError(tb, err)
		}
	}
	_ = ctx
}
