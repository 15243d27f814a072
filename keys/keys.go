// Package keys holds prereg's secrets and the two things done with them:
// keyed hashes (HMAC-SHA-256) that turn identities, devices and addresses
// into pseudonymous keys, and AES-GCM sealing of phone numbers.
//
// Every key carries a key id so that keys can be rotated (docs/SECURITY.md,
// "Keys and rotation"). The first key of a set is the current one, the
// others are kept for what was made with them:
//
//   - a sealed value names the key that opens it; values are sealed with
//     the current key and opened with any configured one;
//   - a keyed hash is pinned by its context: a campaign keeps the HMAC key
//     it was first loaded with (Hasher.Pinned), so a person's identity key,
//     a device's and an address's stay the same across a rotation;
//   - a receipt's MAC is checked under every configured key (Hasher.Each).
//
// A value or a campaign that names a key id the process was not given is
// an operator's error (*UnknownKeyError), never the citizen's: the stage
// that meets it stops (Alarm) until it is restarted with the key.
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/prereg/prereg"
)

// ErrUnknownKey is returned when a sealed value or a campaign names a key
// id this process is not configured with; the error is an
// *UnknownKeyError that names the id.
var ErrUnknownKey = errors.New("keys: unknown key id")

// UnknownKeyError names the key id that is not configured. Key ids are
// labels, never secrets: they may be logged.
type UnknownKeyError struct {
	ID string
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("keys: unknown key id %q: add it to the process's keys (docs/SECURITY.md, \"Keys and rotation\")", e.ID)
}

// Is makes errors.Is(err, ErrUnknownKey) true.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// Key is one secret with its id.
type Key struct {
	ID     string
	Secret []byte
}

// ParseKeys parses "id:base64secret[,id:base64secret...]"; the first key is
// the current one, the others are kept for opening old values. A bare
// secret without an id gets id "k1".
func ParseKeys(s string, minLen int) ([]Key, error) {
	var out []Key
	for i, part := range strings.Split(strings.TrimSpace(s), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, ":")
		if !ok {
			id, secret = "k1", part
		}
		b, err := base64.StdEncoding.DecodeString(secret)
		if err != nil {
			if b, err = hex.DecodeString(secret); err != nil {
				return nil, fmt.Errorf("key %d: want base64 or hex", i+1)
			}
		}
		if len(b) < minLen {
			return nil, fmt.Errorf("key %q: want at least %d bytes, got %d", id, minLen, len(b))
		}
		if slices.ContainsFunc(out, func(k Key) bool { return k.ID == id }) {
			return nil, fmt.Errorf("key id %q given twice: each key needs an id of its own", id)
		}
		out = append(out, Key{ID: id, Secret: b})
	}
	if len(out) == 0 {
		return nil, errors.New("no key given")
	}
	return out, nil
}

// Hasher makes keyed hashes with one key of a set. Different purposes are
// domain-separated so that a device key can never equal an identity key.
type Hasher struct {
	key Key
	// set is every hasher of the keys given to NewHasher, the current
	// first; Pinned and Each choose among them.
	set *hasherSet
	// macs keeps keyed HMAC states: Reset returns one to its keyed start,
	// so a hash does not pay for keying again (the intake makes three or
	// four per submission).
	macs sync.Pool
}

type hasherSet struct {
	all  []*Hasher
	byID map[string]*Hasher
}

// NewHasher returns the hasher of the first (current) key; the others are
// reached through Pinned and Each. It panics without a key or with an id
// given twice, which ParseKeys refuses.
func NewHasher(ks ...Key) *Hasher {
	if len(ks) == 0 {
		panic("keys: NewHasher needs a key")
	}
	set := &hasherSet{byID: make(map[string]*Hasher, len(ks))}
	for _, k := range ks {
		if _, dup := set.byID[k.ID]; dup {
			panic(fmt.Sprintf("keys: key id %q given twice", k.ID))
		}
		h := &Hasher{key: k, set: set}
		set.all = append(set.all, h)
		set.byID[k.ID] = h
	}
	return set.all[0]
}

// ID is the id of the hasher's key.
func (h *Hasher) ID() string { return h.key.ID }

// Current is the hasher of the set's current key: the one new campaigns
// are pinned to.
func (h *Hasher) Current() *Hasher { return h.set.all[0] }

// Pinned is the hasher of key id, from the same set; "" is the current
// key (campaigns made in memory, which no store has pinned). An id the set
// does not have is an *UnknownKeyError.
func (h *Hasher) Pinned(id string) (*Hasher, error) {
	if id == "" {
		return h.set.all[0], nil
	}
	p, ok := h.set.byID[id]
	if !ok {
		return nil, &UnknownKeyError{ID: id}
	}
	return p, nil
}

// Each is every hasher of the set, the current first: what a MAC made
// under any configured key is checked against.
func (h *Hasher) Each() []*Hasher { return h.set.all }

// Sum is the hex HMAC-SHA-256 of purpose and the parts.
func (h *Hasher) Sum(purpose string, parts ...string) string {
	return hex.EncodeToString(h.Raw(purpose, parts...))
}

// Raw is Sum without the hex encoding.
func (h *Hasher) Raw(purpose string, parts ...string) []byte {
	m, ok := h.macs.Get().(hash.Hash)
	if ok {
		m.Reset()
	} else {
		m = hmac.New(sha256.New, h.key.Secret)
	}
	_, _ = io.WriteString(m, purpose)
	for _, p := range parts {
		_, _ = m.Write(separator)
		_, _ = io.WriteString(m, p)
	}
	sum := m.Sum(make([]byte, 0, sha256.Size))
	h.macs.Put(m)
	return sum
}

var separator = []byte{0}

// DeviceKey is the keyed hash of a device id within a campaign: what
// intake puts on an intent and verify compares a token's device with.
func (h *Hasher) DeviceKey(campaign, device string) string {
	return h.Sum(PurposeDevice, campaign, device)
}

// Purposes of keyed hashes.
const (
	PurposeIdentity = "identity" // provider + person id → identity key
	PurposeDevice   = "device"   // campaign + device id → device key
	PurposeAddr     = "addr"     // client address → address key
	PurposeToken    = "token"    // identity token → token key
	PurposeReceipt  = "receipt"  // receipt MACs
	PurposeClaim    = "claim"    // provider + birth date + phone → claim key
)

// Sealer seals and opens values with AES-256-GCM.
type Sealer struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewSealer returns a sealer whose first key seals; all keys open. Keys
// must be exactly 32 bytes, with distinct ids.
func NewSealer(ks []Key) (*Sealer, error) {
	if len(ks) == 0 {
		return nil, errors.New("sealer: no key")
	}
	s := &Sealer{current: ks[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range ks {
		if len(k.Secret) != 32 {
			return nil, fmt.Errorf("sealer: key %q: want 32 bytes for AES-256, got %d", k.ID, len(k.Secret))
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("sealer: %w", err)
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("sealer: %w", err)
		}
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("sealer: key id %q given twice", k.ID)
		}
		s.aeads[k.ID] = a
	}
	return s, nil
}

// Current is the id of the key that seals.
func (s *Sealer) Current() string { return s.current }

// Seal encrypts plain; aad binds the ciphertext to its context (e.g. the
// campaign) so it cannot be moved elsewhere.
func (s *Sealer) Seal(plain, aad []byte) prereg.Sealed {
	a := s.aeads[s.current]
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("keys: no randomness: " + err.Error())
	}
	return prereg.Sealed{KeyID: s.current, Data: a.Seal(nonce, nonce, plain, aad)}
}

// Open decrypts a sealed value.
func (s *Sealer) Open(v prereg.Sealed, aad []byte) ([]byte, error) {
	a, ok := s.aeads[v.KeyID]
	if !ok {
		return nil, &UnknownKeyError{ID: v.KeyID}
	}
	if len(v.Data) < a.NonceSize()+a.Overhead() {
		return nil, errors.New("keys: sealed value too short")
	}
	n := a.NonceSize()
	plain, err := a.Open(nil, v.Data[:n], v.Data[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("keys: open: %w", err)
	}
	return plain, nil
}

// Reseal opens v and seals it again with the current key, for values
// sealed under a key that is to be retired. A value already under the
// current key comes back unchanged, with resealed false.
func (s *Sealer) Reseal(v prereg.Sealed, aad []byte) (out prereg.Sealed, resealed bool, err error) {
	if v.KeyID == s.current {
		return v, false, nil
	}
	plain, err := s.Open(v, aad)
	if err != nil {
		return v, false, err
	}
	out = s.Seal(plain, aad)
	clear(plain)
	return out, true, nil
}

// Random returns n random bytes, base64 encoded: for demo and dev keys.
func Random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("keys: no randomness: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(b)
}
