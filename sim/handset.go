package sim

import (
	"strings"
	"sync"
)

// Handsets are the phones of the simulated world: they count what each
// phone actually received, independently of the gateway's own
// bookkeeping, so that a double send shows even when the gateway thinks it
// de-duplicated (invariant 4 is scored here, not trusted to the gateway).
type Handsets struct {
	mu      sync.Mutex
	byPhone map[string]int
	byKey   map[string]int
	last    map[string]string
	total   int
}

// NewHandsets returns phones that have received nothing yet.
func NewHandsets() *Handsets {
	return &Handsets{byPhone: map[string]int{}, byKey: map[string]int{}, last: map[string]string{}}
}

// Receive is one SMS arriving on a phone. key is the message's
// idempotency key (the appointment and its version): an operator's resend
// has a new version, so it is not a duplicate.
func (h *Handsets) Receive(phone, key, text string) {
	p := NormalizePhone(phone)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.byPhone[p]++
	h.byKey[key]++
	h.last[p] = text
	h.total++
}

// Received is how many messages a phone received.
func (h *Handsets) Received(phone string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byPhone[NormalizePhone(phone)]
}

// Last is the text of the last message a phone received.
func (h *Handsets) Last(phone string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last[NormalizePhone(phone)]
}

// ReceivedKey is how many times the message with this key arrived.
func (h *Handsets) ReceivedKey(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byKey[key]
}

// Duplicates counts deliveries beyond the first of each message version:
// what invariant 4 forbids.
func (h *Handsets) Duplicates() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.byKey {
		n += c - 1
	}
	return n
}

// Total is the number of messages received by all phones.
func (h *Handsets) Total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// Messages is the number of distinct message versions received.
func (h *Handsets) Messages() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byKey)
}

// NormalizePhone reduces a Korean mobile number to its national digits:
// "+82 10-1234-5678", "010-1234-5678" and "01012345678" are one phone.
func NormalizePhone(phone string) string {
	var b strings.Builder
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	d := b.String()
	if strings.HasPrefix(phone, "+82") || (strings.HasPrefix(d, "82") && len(d) >= 11 && !strings.HasPrefix(d, "0")) {
		d = "0" + strings.TrimPrefix(d, "82")
	}
	return d
}

// ValidMobile reports whether a number is a Korean mobile number
// (01X and 7 or 8 more digits), as the gateway checks before it sends.
func ValidMobile(phone string) bool {
	d := NormalizePhone(phone)
	if len(d) != 10 && len(d) != 11 {
		return false
	}
	return strings.HasPrefix(d, "01") && strings.ContainsRune("016789", rune(d[2]))
}
