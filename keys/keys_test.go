package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"
)

// The pooled HMAC states must give the plain HMAC of purpose and parts,
// separated by zero bytes, on every call and from every goroutine.
func TestHasherIsHMACOfPurposeAndParts(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	h := NewHasher(Key{ID: "k1", Secret: secret})
	want := func(purpose string, parts ...string) string {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(purpose))
		for _, p := range parts {
			m.Write([]byte{0})
			m.Write([]byte(p))
		}
		return hex.EncodeToString(m.Sum(nil))
	}
	cases := [][]string{{PurposeDevice, "c1", "dev-1"}, {PurposeAddr, "c1", "127.0.0.1"}, {PurposeReceipt}, {PurposeIdentity, "pass", ""}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				for _, c := range cases {
					if got, w := h.Sum(c[0], c[1:]...), want(c[0], c[1:]...); got != w {
						t.Errorf("Sum%q = %s, want %s", c, got, w)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if h.Sum(PurposeDevice, "ab", "c") == h.Sum(PurposeDevice, "a", "bc") {
		t.Error("parts are not separated")
	}
}
