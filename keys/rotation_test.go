package keys

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func testKey(id string, b byte) Key { return Key{ID: id, Secret: bytes.Repeat([]byte{b}, 32)} }

// A hasher set hashes with its current key, reaches the others by id, and
// names an id it lacks.
func TestHasherSet(t *testing.T) {
	t.Parallel()
	cur := NewHasher(testKey("k2", 2), testKey("k1", 1))
	old := NewHasher(testKey("k1", 1))
	require.Equal(t, "k2", cur.ID())

	pinned, err := cur.Pinned("k1")
	require.NoError(t, err)
	require.Equal(t, old.Sum(PurposeIdentity, "person"), pinned.Sum(PurposeIdentity, "person"), "a pinned key hashes as it did before the rotation")
	require.NotEqual(t, old.Sum(PurposeIdentity, "person"), cur.Sum(PurposeIdentity, "person"))
	same, err := pinned.Pinned("")
	require.NoError(t, err)
	require.Same(t, cur, same, `"" is the current key, from any hasher of the set`)
	require.Same(t, cur, pinned.Current())

	_, err = cur.Pinned("k3")
	require.ErrorIs(t, err, ErrUnknownKey)
	var uk *UnknownKeyError
	require.ErrorAs(t, err, &uk)
	require.Equal(t, "k3", uk.ID)

	ids := []string{}
	for _, h := range pinned.Each() {
		ids = append(ids, h.ID())
	}
	require.Equal(t, []string{"k2", "k1"}, ids, "every key, the current first")
	require.Panics(t, func() { NewHasher(testKey("k1", 1), testKey("k1", 2)) })
}

func TestParseKeysRefusesAnIDTwice(t *testing.T) {
	t.Parallel()
	_, err := ParseKeys("a:"+Random(32)+",a:"+Random(32), 32)
	require.ErrorContains(t, err, `key id "a" given twice`)
}

// Values sealed under an old key open under the rotated set, and Reseal
// moves them to the current key; a key id not configured is an
// *UnknownKeyError, not a failed decryption.
func TestSealerRotation(t *testing.T) {
	t.Parallel()
	old, err := NewSealer([]Key{testKey("e1", 1)})
	require.NoError(t, err)
	rotated, err := NewSealer([]Key{testKey("e2", 2), testKey("e1", 1)})
	require.NoError(t, err)
	aad := []byte("campaign")
	v := old.Seal([]byte("010-1234-5678"), aad)

	plain, err := rotated.Open(v, aad)
	require.NoError(t, err)
	require.Equal(t, "010-1234-5678", string(plain))

	moved, resealed, err := rotated.Reseal(v, aad)
	require.NoError(t, err)
	require.True(t, resealed)
	require.Equal(t, "e2", moved.KeyID)
	plain, err = rotated.Open(moved, aad)
	require.NoError(t, err)
	require.Equal(t, "010-1234-5678", string(plain))
	again, resealed, err := rotated.Reseal(moved, aad)
	require.NoError(t, err)
	require.False(t, resealed, "already under the current key")
	require.Equal(t, moved, again)

	_, err = old.Open(moved, aad)
	require.ErrorIs(t, err, ErrUnknownKey)
	_, _, err = old.Reseal(moved, aad)
	require.ErrorIs(t, err, ErrUnknownKey)
	_, err = rotated.Open(v, []byte("another campaign"))
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnknownKey, "a value that does not open is not a missing key")
}

// The alarm logs once per change of state, whatever the number of
// messages that raise it, and names the ids, never a secret.
func TestAlarmLogsOncePerStateChange(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	a := &Alarm{Stage: "verify", Logger: slog.New(slog.NewTextHandler(&out, nil))}
	require.NoError(t, a.Err())
	require.False(t, a.Raise(errors.New("some other trouble")))
	require.False(t, a.Raise(nil))
	require.False(t, a.Raised())

	for range 100 {
		require.True(t, a.Raise(&UnknownKeyError{ID: "e3"}))
	}
	require.True(t, a.Raised())
	require.ErrorContains(t, a.Err(), "verify: stopped: key ids not configured: e3")
	require.Equal(t, 1, strings.Count(out.String(), "level=ERROR"), out.String())

	a.Raise(&UnknownKeyError{ID: "h9"})
	require.Equal(t, 2, strings.Count(out.String(), "level=ERROR"), "a new id is a new state")
	require.ErrorContains(t, a.Err(), "e3, h9")

	a.Set([]error{&UnknownKeyError{ID: "e3"}, &UnknownKeyError{ID: "h9"}, errors.New("other")})
	require.Equal(t, 2, strings.Count(out.String(), "level=ERROR"), "the same ids: no line")
	a.Set(nil)
	require.NoError(t, a.Err())
	require.False(t, a.Raised())
	require.Equal(t, 1, strings.Count(out.String(), "level=INFO"), "cleared: one line")
}
