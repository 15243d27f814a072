package verify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/keys"
)

// Every outcome with a phone carries its keyed hash, which dedupe's
// per-phone cap counts: the same phone however it was written gives the
// same key, another phone another, the key is made under the campaign's
// pinned HMAC key (a rotation does not reset a phone's count), and it is
// never the phone.
func TestOutcomesCarryThePhoneKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	old := keys.NewHasher(keys.Key{ID: "h1", Secret: []byte("hmac-secret-for-tests-0123456789")})
	w.hasher = keys.NewHasher(keys.Key{ID: "h2", Secret: []byte(keys.Random(32))}, keys.Key{ID: "h1", Secret: []byte("hmac-secret-for-tests-0123456789")})
	w.camp.HMACKey = "h1"
	w.start(fastSettings())
	a, b, c, d := w.person(1), w.person(2), w.person(3), w.person(4)
	ins := []prereg.Intent{
		w.intent("pass", w.token("pass", a, 1), a.birthdate, "010-4321-0001"),
		w.intent("pass", w.token("pass", b, 1), b.birthdate, "+82 10-4321-0001"),
		w.intent("pass", w.token("pass", c, 1), c.birthdate, "+821043210001"),
		w.intent("pass", w.token("pass", d, 1), d.birthdate, "010-4321-0002"),
		w.intent("pass", w.token("pass", d, 2)+"x", d.birthdate, "010-4321-0003"), // rejected: still carries it
	}
	w.submit(ins...)
	got := w.outcomes(len(ins), 20*time.Second)
	shared := got[ins[0].Receipt].PhoneKey
	require.NotEmpty(t, shared)
	for _, in := range ins[1:3] {
		require.Equal(t, shared, got[in.Receipt].PhoneKey, "one phone, however written, is one key")
	}
	require.NotEqual(t, shared, got[ins[3].Receipt].PhoneKey)
	require.Equal(t, prereg.VerdictRejected, got[ins[4].Receipt].Verdict)
	require.NotEmpty(t, got[ins[4].Receipt].PhoneKey)
	// Made under the pinned key: the old key's hash of the E.164 digits.
	require.Equal(t, old.Sum("verify-phone", "821043210001"), shared)
	for _, o := range got {
		require.NotContains(t, o.PhoneKey, "43210001", "a keyed hash, never the phone")
		require.False(t, strings.Contains(o.PhoneKey, "+82"))
	}
}
