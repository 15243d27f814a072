package intake

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"

	"github.com/prereg/prereg/keys"
)

// Receipt layout: 16 bytes of id (random, or a MAC of campaign, device and
// Idempotency-Key) followed by a 10-byte MAC of the id, base64url without
// padding. The trailing MAC lets any replica tell a receipt it could have
// issued from a forged one without a lookup; 80 bits make guessing one
// hopeless at any request rate.
const (
	receiptIDLen  = 16
	receiptMACLen = 10
	// ReceiptLen is the length of a receipt string.
	ReceiptLen = ((receiptIDLen+receiptMACLen)*8 + 5) / 6
)

// Receipts issues and checks receipts (docs/DESIGN.md, "Receipts and
// idempotency"). A receipt is made with Hasher's key and checked under
// every key of its set, so receipts issued before a key rotation stay
// valid for as long as their key is configured.
type Receipts struct {
	Hasher *keys.Hasher
}

// Random is the receipt of a submission without an Idempotency-Key: 128
// random bits plus a MAC.
func (r Receipts) Random() string {
	id := make([]byte, receiptIDLen)
	if _, err := rand.Read(id); err != nil {
		panic("intake: no randomness: " + err.Error())
	}
	return r.seal(id)
}

// Idempotent is the receipt of a submission with an Idempotency-Key: a MAC
// of (campaign, device, key), so every replica with the same key gives the
// same receipt without shared state.
func (r Receipts) Idempotent(campaignID, deviceID, key string) string {
	return r.seal(r.Hasher.Raw(keys.PurposeReceipt, "idempotent", campaignID, deviceID, key)[:receiptIDLen])
}

// Valid reports whether s is a receipt this system issued, under any
// configured HMAC key. Every key is tried, whichever matches, so the time
// taken says nothing about which key made it, nor how close a forgery came.
func (r Receipts) Valid(s string) bool {
	if len(s) != ReceiptLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != receiptIDLen+receiptMACLen {
		return false
	}
	valid := 0
	for _, h := range r.Hasher.Each() {
		valid |= subtle.ConstantTimeCompare(b[receiptIDLen:], mac(h, b[:receiptIDLen]))
	}
	return valid == 1
}

func (r Receipts) seal(id []byte) string {
	b := make([]byte, 0, receiptIDLen+receiptMACLen)
	b = append(b, id...)
	b = append(b, mac(r.Hasher, id)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func mac(h *keys.Hasher, id []byte) []byte {
	return h.Raw(keys.PurposeReceipt, "check", string(id))[:receiptMACLen]
}
