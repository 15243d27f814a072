// Package keys holds prereg's secrets and the two things done with them:
// keyed hashes (HMAC-SHA-256) that turn identities, devices and addresses
// into pseudonymous keys, and AES-GCM sealing of phone numbers. Every key
// carries a key id so that keys can be rotated: sealed values name the key
// that opens them, and hashes are always made with the current key.
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
	"strings"
	"sync"

	"github.com/prereg/prereg"
)

// ErrUnknownKey is returned when a sealed value names a key we do not have.
var ErrUnknownKey = errors.New("keys: unknown key id")

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
		out = append(out, Key{ID: id, Secret: b})
	}
	if len(out) == 0 {
		return nil, errors.New("no key given")
	}
	return out, nil
}

// Hasher makes keyed hashes. Different purposes are domain-separated so
// that a device key can never equal an identity key.
type Hasher struct {
	key Key
	// macs keeps keyed HMAC states: Reset returns one to its keyed start,
	// so a hash does not pay for keying again (the intake makes three or
	// four per submission).
	macs sync.Pool
}

// NewHasher returns a hasher with the current key.
func NewHasher(k Key) *Hasher { return &Hasher{key: k} }

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

// NewSealer returns a sealer whose first key seals; all keys open.
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
		s.aeads[k.ID] = a
	}
	return s, nil
}

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
		return nil, ErrUnknownKey
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

// Random returns n random bytes, base64 encoded: for demo and dev keys.
func Random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("keys: no randomness: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(b)
}
