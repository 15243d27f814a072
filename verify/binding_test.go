package verify_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/sim"
)

// A token from the provider's sign-in page is bound to a campaign, a
// device and a short life: verify accepts it only from that device, for
// that campaign, submitted before it expired, and holds a remembered
// answer to the same binding. A token bound to nothing (an app's) is
// verified as before.
func TestBoundTokens(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.start(fastSettings())
	pass := w.provs["pass"]
	accepted := time.Now().UTC()
	const device = "browser-device"

	type tc struct {
		name     string
		claims   func(p person) sim.TokenClaims
		device   string
		received time.Time
		want     prereg.Reason
	}
	bound := func(p person, campaign string, expires time.Time, nonce int) sim.TokenClaims {
		return sim.TokenClaims{Person: p.id, Birthdate: p.birthdate, Phone: p.phone, Device: device, Nonce: nonce, Campaign: campaign, Expires: expires}
	}
	cases := []tc{
		{"bound and fresh", func(p person) sim.TokenClaims { return bound(p, campaignID, accepted.Add(time.Minute), 1) }, device, accepted, prereg.ReasonNone},
		{"another campaign", func(p person) sim.TokenClaims { return bound(p, "other-campaign", accepted.Add(time.Minute), 2) }, device, accepted, prereg.ReasonTokenCampaign},
		{"another device", func(p person) sim.TokenClaims { return bound(p, campaignID, accepted.Add(time.Minute), 3) }, "someone-else", accepted, prereg.ReasonTokenDevice},
		{"expired at acceptance", func(p person) sim.TokenClaims { return bound(p, campaignID, accepted.Add(-time.Second), 4) }, device, accepted, prereg.ReasonTokenExpired},
		// Verify's clock is past the expiry, the acceptance was not: a
		// backlog does not turn a good token bad.
		{"accepted before expiry, verified after", func(p person) sim.TokenClaims { return bound(p, campaignID, accepted.Add(-time.Second), 5) }, device, accepted.Add(-time.Minute), prereg.ReasonNone},
		{"unbound app token", func(p person) sim.TokenClaims {
			return sim.TokenClaims{Person: p.id, Birthdate: p.birthdate, Phone: p.phone, Device: "app", Nonce: 6}
		}, "any-device", accepted, prereg.ReasonNone},
	}
	var ins []prereg.Intent
	want := map[string]prereg.Reason{}
	names := map[string]string{}
	for i, c := range cases {
		p := w.person(100 + i)
		in := w.intent("pass", pass.Issue(c.claims(p)), p.birthdate, p.phone)
		in.DeviceKey = w.hasher.DeviceKey(campaignID, c.device)
		in.ReceivedAt = c.received
		ins = append(ins, in)
		want[in.Receipt], names[in.Receipt] = c.want, c.name
	}
	w.submit(ins...)
	got := w.outcomes(len(ins), 30*time.Second)
	for r, reason := range want {
		o := got[r]
		if reason == prereg.ReasonNone {
			require.Equal(t, prereg.VerdictVerified, o.Verdict, "%s: %s", names[r], o.Reason)
			continue
		}
		require.Equal(t, prereg.VerdictRejected, o.Verdict, names[r])
		require.Equal(t, reason, o.Reason, names[r])
	}

	// The first case's token again, from another device: its answer is
	// remembered, and the binding with it.
	p := w.person(100)
	again := w.intent("pass", pass.Issue(cases[0].claims(p)), p.birthdate, p.phone)
	again.DeviceKey = w.hasher.DeviceKey(campaignID, "copied-to")
	w.submit(again)
	o := w.outcomes(len(ins)+1, 30*time.Second)[again.Receipt]
	require.Equal(t, prereg.ReasonTokenDevice, o.Reason)
}
