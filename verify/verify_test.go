package verify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
)

// TestOutcomes checks each verdict and reason, the identity key, the shard
// and that the provider is spared for known tokens and claims.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, providerSpec{name: "pass"}, providerSpec{name: "kakao"})
	db := pgtest.New(t)
	w.regs = &postgres.RegistrationStore{Pool: db.Pool}
	w.start(fastSettings())

	alice, bob, carol, dave := w.person(1), w.person(2), w.person(3), w.person(4)
	old := person{id: "old", birthdate: "1950-08-19", phone: "+821099990000"}
	aliceTok := w.token("pass", alice, 1)
	cases := []struct {
		name   string
		in     prereg.Intent
		verd   prereg.Verdict
		reason prereg.Reason
		phone  bool
		ident  string // person whose identity key the outcome carries
	}{
		{"verified", w.intent("pass", aliceTok, alice.birthdate, "010-1234-0001"), prereg.VerdictVerified, "", true, alice.id},
		{"another phone than the provider's", w.intent("pass", w.token("pass", bob, 1), bob.birthdate, "010-5555-0000"), prereg.VerdictVerified, "", false, bob.id},
		{"invalid token", w.intent("pass", aliceTok+"x", alice.birthdate, "010-7777-0000"), prereg.VerdictRejected, prereg.ReasonInvalidToken, false, ""},
		{"token of another provider", w.intent("kakao", w.token("pass", carol, 1), carol.birthdate, carol.phone), prereg.VerdictRejected, prereg.ReasonInvalidToken, false, ""},
		{"window jump", w.intent("kakao", w.token("kakao", carol, 1), "1990-01-09", carol.phone), prereg.VerdictRejected, prereg.ReasonBirthdateMismatch, true, carol.id},
		{"not in cohort", w.intent("pass", w.token("pass", old, 1), old.birthdate, old.phone), prereg.VerdictRejected, prereg.ReasonNotInCohort, true, old.id},
		{"same person via another provider", w.intent("kakao", w.token("kakao", dave, 7), dave.birthdate, dave.phone), prereg.VerdictVerified, "", true, dave.id},
	}
	for _, c := range cases {
		w.submit(c.in)
	}
	got := w.outcomes(len(cases), 20*time.Second)
	pass := w.provs["pass"]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := got[c.in.Receipt]
			require.Equal(t, c.verd, o.Verdict)
			require.Equal(t, c.reason, o.Reason)
			require.Equal(t, c.phone, o.PhoneVerified)
			require.Equal(t, w.hasher.Sum(keys.PurposeToken, c.in.IdentityToken), o.TokenKey)
			require.Equal(t, c.in.Birthdate, o.ClaimedBirthdate)
			require.Equal(t, c.in.Phone, o.Phone, "the sealed phone travels on")
			require.Equal(t, c.in.DeviceKey, o.DeviceKey)
			require.False(t, o.DecidedAt.IsZero())
			shardKey := c.in.Receipt
			if c.ident != "" {
				ci := pass.PersonID(c.ident)
				require.Equal(t, w.hasher.Sum(keys.PurposeIdentity, ci), o.IdentityKey)
				shardKey = o.IdentityKey
			} else {
				require.Empty(t, o.IdentityKey)
			}
			require.Equal(t, stream.VerifiedSubject(prereg.Shard(shardKey, w.camp.Shards)), o.subject)
		})
	}

	// Sparing the provider: the same token again is not sent; the same
	// claim with a new token is a duplicate without a call, once the
	// person is registered (before, it must be verified: a claim_seen for
	// someone unregistered could never be resolved).
	calls := pass.Calls()
	again := w.intent("pass", aliceTok, alice.birthdate, alice.phone)
	early := w.intent("pass", w.token("pass", alice, 3), alice.birthdate, "010-1234-0001")
	early.DeviceKey = cases[0].in.DeviceKey // her own device, a new token
	w.submit(again, early)
	got = w.outcomes(len(cases)+2, 10*time.Second)
	require.Equal(t, calls+1, pass.Calls(), "alice is not registered yet: her seen claim is verified again")
	require.Equal(t, prereg.VerdictVerified, got[early.Receipt].Verdict)

	register(t, db, w.camp, got[cases[0].in.Receipt].IdentityKey)
	calls = pass.Calls()
	sameClaim := w.intent("pass", w.token("pass", alice, 2), alice.birthdate, "010-1234-0001")
	sameClaim.DeviceKey = cases[0].in.DeviceKey
	// Her twin gives the family's phone and the same birth date from
	// another device: the same claim but for the device, so verified.
	twin := person{id: "alice-twin", birthdate: alice.birthdate, phone: alice.phone}
	twinClaim := w.intent("pass", w.token("pass", twin, 1), alice.birthdate, "010-1234-0001")
	// bob's phone was not confirmed: his claim must not short-cut.
	bobClaim := w.intent("pass", w.token("pass", bob, 2), bob.birthdate, "010-5555-0000")
	w.submit(sameClaim, bobClaim, twinClaim)
	got = w.outcomes(len(cases)+5, 10*time.Second)
	require.Equal(t, calls+2, pass.Calls(), "only bob's unconfirmed claim and the twin's other device reach the provider")
	require.Equal(t, prereg.VerdictVerified, got[twinClaim.Receipt].Verdict)
	require.NotEqual(t, got[cases[0].in.Receipt].IdentityKey, got[twinClaim.Receipt].IdentityKey, "the twin is another person")

	o := got[again.Receipt]
	require.Equal(t, prereg.VerdictVerified, o.Verdict, "a cached token decides as the provider did")
	dup := got[sameClaim.Receipt]
	require.Equal(t, prereg.VerdictDuplicate, dup.Verdict)
	require.Equal(t, prereg.ReasonClaimSeen, dup.Reason)
	require.Equal(t, got[cases[0].in.Receipt].IdentityKey, dup.IdentityKey, "claim_seen names the identity it matched")
	require.Equal(t, prereg.VerdictVerified, got[bobClaim.Receipt].Verdict)
	require.Zero(t, w.submittedLeft(), "every intent acknowledged")
}

// TestOutageDuringSurge: the provider is down while a surge arrives;
// nothing is lost or made unprocessable, and everything is decided once
// it returns. Health in KV goes open, then closed.
func TestOutageDuringSurge(t *testing.T) {
	t.Parallel()
	w := newWorld(t, providerSpec{name: "pass", concurrency: 8})
	pass := w.provs["pass"]
	pass.setFaults(t, sim.Faults{Down: true})
	w.start(fastSettings())

	const n = 300
	w.submit(w.surge(n)...)
	require.Eventually(t, func() bool { return w.health("pass").State == "open" }, 10*time.Second, 10*time.Millisecond, "waiting for breaker open in provider_health")
	// The outage goes on through two half-open periods (more probes than
	// one admits): long enough for a verifier that ignored its breaker to
	// decide, or give up on, intents.
	opened, probes := pass.Calls(), int64(fastSettings().Breaker.HalfOpenRequests)
	require.Eventually(t, func() bool { return pass.Calls() > opened+probes }, 10*time.Second, 10*time.Millisecond,
		"waiting for the probes of two half-open periods")
	require.Empty(t, w.readOutcomes(), "nothing decided while the provider is down")
	require.Equal(t, n, w.submittedLeft())
	outageCalls := pass.Calls()
	require.Less(t, outageCalls, int64(n), "an open breaker spares the provider")

	pass.setFaults(t, sim.Faults{})
	got := w.outcomes(n, 30*time.Second)
	for _, o := range got {
		require.Equal(t, prereg.VerdictVerified, o.Verdict, "receipt %s: %s", o.Receipt, o.Reason)
	}
	require.EqualValues(t, n, pass.Stats().OK, "each token verified once")
	require.Eventually(t, func() bool { return w.health("pass").State == "closed" }, 5*time.Second, 10*time.Millisecond, "waiting for breaker closed in provider_health")
	require.Zero(t, w.submittedLeft())
}

// TestBreakerTrips: a 5xx storm trips the breaker within MinRequests
// calls (plus the calls already in flight); a 4xx storm of the same size
// does not trip it.
func TestBreakerTrips(t *testing.T) {
	t.Parallel()
	const conc, n = 4, 60
	cases := []struct {
		name   string
		faults sim.Faults
		trips  bool
	}{
		{"5xx storm trips", sim.Faults{ErrorRate: 1, ErrorStatus: 503}, true},
		{"timeout storm trips", sim.Faults{TimeoutRate: 1}, true},
		{"slow-drip storm trips", sim.Faults{DripRate: 1, DripEvery: sim.Duration(50 * time.Millisecond)}, true},
		// A refusal of most distinct tokens is the provider's trouble (a
		// rotated credential, a WAF), not every intent's.
		{"4xx storm trips", sim.Faults{ErrorRate: 1, ErrorStatus: 401}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, providerSpec{name: "pass", concurrency: conc, timeout: 300 * time.Millisecond})
			pass := w.provs["pass"]
			pass.setFaults(t, c.faults)
			set := fastSettings()
			set.Breaker.OpenFor = time.Minute // no half-open probes during the test
			set.MaxAttempts = 1000            // the 4xx storm retries instead of ending
			w.start(set)
			w.submit(w.surge(n)...)
			if c.trips {
				require.Eventually(t, func() bool { return w.health("pass").State == "open" }, 10*time.Second, 10*time.Millisecond, "waiting for breaker open")
				// Count once the calls still under way when it opened
				// have ended: no probe comes for a minute, so the count
				// is final then.
				require.Eventually(t, func() bool { return pass.inFlight.Load() == 0 }, 10*time.Second, 10*time.Millisecond,
					"waiting for the calls in flight at the provider to end")
				min := int64(set.Breaker.MinRequests)
				require.LessOrEqual(t, pass.Calls(), min+conc-1, "tripped within MinRequests calls plus those in flight")
				require.GreaterOrEqual(t, pass.Calls(), min)
				return
			}
			require.Eventually(t, func() bool { return pass.Calls() >= 2*n }, 10*time.Second, 10*time.Millisecond, "waiting for a 4xx for every message")
			// Health is published on an interval as well as on a change of
			// state, and a breaker that never changes state may not have
			// been published yet.
			require.Eventually(t, func() bool { return w.health("pass").State != "" }, 5*time.Second, 10*time.Millisecond, "waiting for provider health published")
			h := w.health("pass")
			require.Equal(t, "closed", h.State)
			require.Zero(t, h.ErrorRate, "a refusal is not a provider failure")
		})
	}
}

// TestHalfOpenAdmitsAtMostMaxRequests: while the provider keeps failing,
// each half-open period lets at most HalfOpenRequests probes through.
func TestHalfOpenAdmitsAtMostMaxRequests(t *testing.T) {
	t.Parallel()
	w := newWorld(t, providerSpec{name: "pass", concurrency: 16})
	pass := w.provs["pass"]
	pass.setFaults(t, sim.Faults{ErrorRate: 1, Latency: sim.Duration(100 * time.Millisecond)})
	set := fastSettings()
	w.start(set)
	w.submit(w.surge(200)...)
	require.Eventually(t, func() bool { return w.health("pass").State == "open" }, 10*time.Second, 10*time.Millisecond, "waiting for breaker open")
	require.Eventually(t, func() bool { return pass.inFlight.Load() == 0 }, 5*time.Second, 10*time.Millisecond, "waiting for calls admitted while closed to finish")
	pass.maxInFlight.Store(0)
	before := pass.Calls()
	// Several open → half-open → open cycles: more calls than two
	// half-open periods can admit.
	cycles := int64(2*set.Breaker.HalfOpenRequests + 1)
	require.Eventually(t, func() bool { return pass.Calls() >= before+cycles }, 10*time.Second, 10*time.Millisecond,
		"waiting for probes of three half-open periods")
	require.Greater(t, pass.Calls(), before, "half-open lets probes through")
	require.LessOrEqual(t, pass.maxInFlight.Load(), int64(set.Breaker.HalfOpenRequests), "probes at once")
	require.Greater(t, pass.maxInFlight.Load(), int64(0))
	require.Empty(t, w.readOutcomes(), "a failing provider decides nothing")
}

// TestSlowProviderDoesNotStarveOthers: intents for a slow provider wait
// in its own bulkhead while a fast provider's intents flow.
func TestSlowProviderDoesNotStarveOthers(t *testing.T) {
	t.Parallel()
	const slowLatency = 12 * time.Second
	w := newWorld(t, providerSpec{name: "slow", concurrency: 2, timeout: 10 * time.Second}, providerSpec{name: "fast", concurrency: 8})
	w.provs["slow"].setFaults(t, sim.Faults{Latency: sim.Duration(slowLatency)})
	set := fastSettings()
	set.StopTimeout = time.Second
	start := time.Now()
	w.start(set)
	var fast, all []prereg.Intent
	for i := range 240 {
		p := w.person(i)
		name := "fast"
		if i%4 == 0 { // a quarter of the surge goes to the slow provider, first
			name = "slow"
		}
		in := w.intent(name, w.token(name, p, 0), p.birthdate, p.phone)
		all = append(all, in)
		if name == "fast" {
			fast = append(fast, in)
		}
	}
	w.submit(all...)
	// The slow provider cannot answer before slowLatency has passed since
	// start, so outcomes counted before then are all the fast provider's.
	got := w.outcomes(len(fast), slowLatency-time.Since(start)-200*time.Millisecond)
	for _, in := range fast {
		require.Equal(t, prereg.VerdictVerified, got[in.Receipt].Verdict)
	}
}

// TestFlappingProvider: a provider that goes down and up several times
// leaves every intent decided exactly once, none unprocessable, each
// token verified once.
func TestFlappingProvider(t *testing.T) {
	t.Parallel()
	w := newWorld(t, providerSpec{name: "pass", concurrency: 8, rate: 400})
	pass := w.provs["pass"]
	var outages []sim.Outage
	for i := range 5 {
		from := time.Duration(i) * 600 * time.Millisecond
		outages = append(outages, sim.Outage{From: sim.Duration(from), To: sim.Duration(from + 300*time.Millisecond)})
	}
	pass.setFaults(t, sim.Faults{Outages: outages, Latency: sim.Duration(2 * time.Millisecond)})
	w.start(fastSettings())
	const n = 300
	w.submit(w.surge(n)...)
	got := w.outcomes(n, 40*time.Second)
	for _, o := range got {
		require.Equal(t, prereg.VerdictVerified, o.Verdict, "receipt %s: %s", o.Receipt, o.Reason)
	}
	require.EqualValues(t, n, pass.Stats().OK, "each token verified once")
	require.Positive(t, pass.Stats().Failed, "the provider did fail meanwhile")
	require.Zero(t, w.submittedLeft())
}

// TestOutageOnsetCountsAgainstNoIntent: a provider that goes down after
// a busy spell still has a window full of successes, by which it looks
// healthy for a while; the few intents then in flight fail again and
// again on fast retries. Those failures are the provider's, and none may
// count against an intent more than once.
func TestOutageOnsetCountsAgainstNoIntent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, providerSpec{name: "pass", concurrency: 8, rate: 2000})
	pass := w.provs["pass"]
	set := fastSettings()
	set.Breaker.MinRequests, set.Breaker.Window = 20, 10*time.Second // the successes stay in the window
	w.start(set)
	const busy, late = 300, 6
	surge := w.surge(busy + late)
	w.submit(surge[:busy]...)
	w.outcomes(busy, 20*time.Second)
	pass.setFaults(t, sim.Faults{Down: true})
	w.submit(surge[busy:]...)
	require.Eventually(t, func() bool { return pass.Stats().Failed >= 4*late || len(w.readOutcomes()) > busy },
		10*time.Second, 5*time.Millisecond, "waiting for the late intents to fail a few times each (or be decided)")
	pass.setFaults(t, sim.Faults{})
	got := w.outcomes(busy+late, 20*time.Second)
	for _, o := range got {
		require.Equal(t, prereg.VerdictVerified, o.Verdict, "receipt %s: %s", o.Receipt, o.Reason)
	}
}

// TestWorkerKilledMidBatch: a verify process loses its connection in the
// middle of a batch; another takes over. Nothing is lost and nothing is
// published downstream twice.
func TestWorkerKilledMidBatch(t *testing.T) {
	t.Parallel()
	w := newWorld(t, providerSpec{name: "pass", concurrency: 16})
	pass := w.provs["pass"]
	pass.setFaults(t, sim.Faults{Latency: sim.Duration(20 * time.Millisecond)})
	set := fastSettings()
	set.AckWait = time.Second // the survivor gets the victim's messages soon
	victim, victimConn := w.start(set)
	const n = 240
	w.submit(w.surge(n)...)
	require.Eventually(t, func() bool {
		s, err := w.js.JS.Stream(context.Background(), stream.Verified)
		return err == nil && s.CachedInfo().State.Msgs >= n/3
	}, 10*time.Second, 10*time.Millisecond, "waiting for a third decided")
	victimConn.Close() // crash: in-flight calls, publishes and acks fail
	victim.Stop()
	survivor, _ := w.start(set)
	got := w.outcomes(n, 30*time.Second)
	// A late redelivery would come from JetStream after AckWait, and no
	// fake clock reaches into the server: instead, wait until every
	// intent is acknowledged (a work-queue stream then holds nothing to
	// redeliver), and stop the survivor, which finishes what it holds.
	// No outcome can be published after that.
	require.Eventually(t, func() bool { return w.submittedLeft() == 0 }, 30*time.Second, 10*time.Millisecond,
		"waiting for every intent to be acknowledged")
	survivor.Stop()
	require.Len(t, w.readOutcomes(), n, "no outcome published twice")
	for _, o := range got {
		require.Equal(t, prereg.VerdictVerified, o.Verdict)
	}
	require.Zero(t, w.submittedLeft())
}

// TestPoisonMessage: messages that cannot be decided end as
// rejected/unprocessable and are acknowledged, once.
func TestPoisonMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		publish func(w *world) string // returns the receipt
		faults  sim.Faults
	}{
		{"not an intent", func(w *world) string {
			_, err := w.js.JS.Publish(context.Background(), stream.SubmittedSubject(1), []byte("{not json"), jetstream.WithMsgID("poison-1"))
			require.NoError(t, err)
			return "poison-1"
		}, sim.Faults{}},
		{"phone sealed for another campaign", func(w *world) string {
			p := w.person(1)
			in := w.intent("pass", w.token("pass", p, 0), p.birthdate, p.phone)
			in.Phone = w.sealer.Seal([]byte(p.phone), []byte("other-campaign"))
			w.submit(in)
			return in.Receipt
		}, sim.Faults{}},
		{"unknown provider", func(w *world) string {
			p := w.person(1)
			in := w.intent("nobody", "tok", p.birthdate, p.phone)
			w.submit(in)
			return in.Receipt
		}, sim.Faults{}},
		{"provider refuses the request", func(w *world) string {
			// Refused alone while the provider answers everyone else: the
			// intent's fault.
			p := w.person(1)
			tok := w.token("pass", p, 0)
			w.provs["pass"].refuse.Store(tok, true)
			in := w.intent("pass", tok, p.birthdate, p.phone)
			others := w.surge(40)[2:]
			w.submit(append(others, in)...)
			return in.Receipt
		}, sim.Faults{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.provs["pass"].setFaults(t, c.faults)
			set := fastSettings()
			// The refused intent's failures count while the provider is
			// healthy for others: keep their answers in the window.
			set.Breaker.Window = 10 * time.Second
			w.start(set)
			receipt := c.publish(w)
			var o outcomeMsg
			require.Eventually(t, func() bool {
				var ok bool
				o, ok = w.readOutcomes()[receipt]
				return ok
			}, 15*time.Second, 20*time.Millisecond, "an outcome for the poison message")
			require.Equal(t, prereg.VerdictRejected, o.Verdict)
			require.Equal(t, prereg.ReasonUnprocessable, o.Reason)
			require.True(t, strings.HasPrefix(o.subject, prereg.SubjectVerified+"."))
			require.Eventually(t, func() bool { return w.submittedLeft() == 0 }, 5*time.Second, 10*time.Millisecond, "waiting for the poison message acknowledged")
		})
	}
}

// TestOutcomeCarriesNoToken: the token is only in the submitted stream.
func TestOutcomeCarriesNoToken(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.start(fastSettings())
	var ins []prereg.Intent
	for i := range 20 {
		p := w.person(i)
		in := w.intent("pass", w.token("pass", p, 0), p.birthdate, p.phone)
		ins = append(ins, in)
		w.submit(in)
	}
	w.outcomes(len(ins), 10*time.Second)
	ctx := context.Background()
	for _, name := range []string{stream.Verified, "KV_verify_tokens", "KV_verify_claims", "KV_provider_health"} {
		s, err := w.js.JS.Stream(ctx, name)
		require.NoError(t, err, name)
		c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		require.NoError(t, err)
		msgs := int(s.CachedInfo().State.Msgs)
		batch, err := c.Fetch(max(msgs, 1), jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			body := string(m.Data()) + m.Subject()
			for i, in := range ins {
				p := w.person(i)
				require.NotContains(t, body, in.IdentityToken, "%s holds a token", name)
				require.NotContains(t, body, strings.TrimPrefix(p.phone, "+"), "%s holds a phone", name)
				require.NotContains(t, body, w.provs["pass"].PersonID(p.id), "%s holds a CI", name)
			}
		}
	}
}

// register records a registration for an identity, as dedupe would.
func register(t *testing.T, db *pgtest.DB, c *campaign.Campaign, identityKey string) {
	t.Helper()
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO campaigns (id, name, spec, shards, device_cap) VALUES ($1, $1, '{}', $2, 4) ON CONFLICT DO NOTHING`, c.ID, c.Shards)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ($1, $2, 0, 'w', '1990-01-01', '11680', 'k1', '\x00', 'r', 'd', now())`, c.ID, identityKey)
	require.NoError(t, err)
}
