package verify_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/verify"
)

// A campaign pinned to the key it started with keeps its people's
// identity keys when another key becomes current.
func TestIdentityKeysFollowTheCampaignsPin(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	old := w.hasher
	w.hasher = keys.NewHasher(keys.Key{ID: "h2", Secret: []byte(keys.Random(32))}, keys.Key{ID: "h1", Secret: []byte("hmac-secret-for-tests-0123456789")})
	w.camp.HMACKey = "h1"
	w.start(fastSettings())
	alice := w.person(1)
	in := w.intent("pass", w.token("pass", alice, 1), alice.birthdate, alice.phone)
	w.submit(in)
	o := w.outcomes(1, 20*time.Second)[in.Receipt]
	require.Equal(t, prereg.VerdictVerified, o.Verdict)
	require.Equal(t, old.Sum(keys.PurposeIdentity, w.provs["pass"].PersonID(alice.id)), o.IdentityKey)
	require.Equal(t, old.Sum(keys.PurposeToken, in.IdentityToken), o.TokenKey)
}

// A key id this process lacks, on a phone or as a campaign's pin, is the
// operator's error: the stage stops taking messages and says why in
// Ready, and no submission is decided against its citizen. A process
// with the key then decides every one of them.
func TestMissingKeyStopsTheStage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		miss func(w *world, in *prereg.Intent) (id string, mend func(cfg *verify.Config))
	}{
		{name: "a phone under an encryption key not configured", miss: func(w *world, in *prereg.Intent) (string, func(*verify.Config)) {
			k := keys.Key{ID: "e9", Secret: []byte(keys.Random(32))[:32]}
			other, err := keys.NewSealer([]keys.Key{k})
			require.NoError(t, err)
			in.Phone = other.Seal([]byte("+821012340001"), []byte(campaignID))
			return "e9", func(cfg *verify.Config) {
				both, err := keys.NewSealer([]keys.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}, k})
				require.NoError(t, err)
				cfg.Sealer = both
			}
		}},
		{name: "a campaign pinned to an HMAC key not configured", miss: func(w *world, _ *prereg.Intent) (string, func(*verify.Config)) {
			w.camp.HMACKey = "h9"
			return "h9", func(cfg *verify.Config) {
				cfg.Hasher = keys.NewHasher(keys.Key{ID: "h1", Secret: []byte("hmac-secret-for-tests-0123456789")}, keys.Key{ID: "h9", Secret: []byte(keys.Random(32))})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			alice, bob := w.person(1), w.person(2)
			first := w.intent("pass", w.token("pass", alice, 1), alice.birthdate, alice.phone)
			id, mend := tc.miss(w, &first)
			v, _ := w.start(fastSettings())
			w.submit(first)
			require.Eventually(t, func() bool { return v.Ready(context.Background()) != nil }, 10*time.Second, 10*time.Millisecond)
			require.ErrorContains(t, v.Ready(context.Background()), id)

			second := w.intent("pass", w.token("pass", bob, 1), bob.birthdate, bob.phone)
			w.submit(second)
			require.Never(t, func() bool { return len(w.readOutcomes()) > 0 }, time.Second, 50*time.Millisecond,
				"a stopped stage decides nothing: no unprocessable, no rejection")
			require.Error(t, v.Ready(context.Background()), "still stopped")

			// Another process, restarted with the key.
			nc, err := nats.Connect(w.js.ClientURL())
			require.NoError(t, err)
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			cfg := verify.Config{JetStream: js, Campaigns: campaigns{campaignID: w.camp}, Hasher: w.hasher, Sealer: w.sealer, Settings: fastSettings()}
			mend(&cfg)
			fixed, err := verify.New(cfg)
			require.NoError(t, err)
			require.NoError(t, fixed.Start(context.Background()))
			t.Cleanup(func() { fixed.Stop(); nc.Close() })
			got := w.outcomes(2, 30*time.Second)
			for _, in := range []prereg.Intent{first, second} {
				require.Equal(t, prereg.VerdictVerified, got[in.Receipt].Verdict, "decided by the process with the key")
			}
			require.NoError(t, fixed.Ready(context.Background()))
		})
	}
}
