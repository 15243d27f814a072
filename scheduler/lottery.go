package scheduler

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"
)

// SeedSize is the size of a lottery seed in bytes.
const SeedSize = 32

// Commitment is the public side of a window's lottery seed: its hash, made
// public before the window closes, and the seed itself once a real run has
// revealed it.
type Commitment struct {
	Campaign    string    `json:"campaign"`
	Window      string    `json:"window"`
	Hash        string    `json:"hash"` // hex SHA-256 of the seed
	CommittedAt time.Time `json:"committed_at"`
	// Seed is the hex seed; empty until a real run reveals it.
	Seed       string     `json:"seed,omitempty"`
	RevealedAt *time.Time `json:"revealed_at,omitempty"`
}

// Seed is a committed lottery seed as the allocator reads it.
type Seed struct {
	Commitment
	Value []byte
}

// SeedHash is the hex SHA-256 of a seed: what is published before the
// window closes.
func SeedHash(seed []byte) string {
	h := sha256.Sum256(seed)
	return hex.EncodeToString(h[:])
}

// DrawKey is a registration's place in the lottery: SHA-256 of the seed
// followed by the registration id as 8 big-endian bytes. Registrations are
// drawn in ascending order of their keys (ties, which SHA-256 makes
// practically impossible, by id). In SQL:
// sha256(seed || int8send(id)).
func DrawKey(seed []byte, registration int64) [32]byte {
	var room [SeedSize + 8]byte // a seed of SeedSize hashes without an allocation
	buf := append(room[:0], seed...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(registration))
	return sha256.Sum256(buf)
}

// DrawOrder returns the indexes of regs in the order of the lottery drawn
// with seed: the allocator's order, and what VerifyRound recomputes.
// Hashing 1.9 million ids is the costly part, so it is spread over the
// CPUs. A run holds every registration it draws while it sorts them, so
// the sort keeps only the first eight bytes of each key, as a big-endian
// word, beside the registration's index (16 bytes, not the 40 of the whole
// key): keys whose first words tie, which SHA-256 makes rare (about n²/2⁶⁵
// pairs), are hashed again and compared whole, so the order is exactly
// that of the keys' bytes, then of the ids.
func DrawOrder(seed []byte, regs []Registration) []int {
	if len(regs) > math.MaxInt32 {
		panic("scheduler: a draw over more than 2³¹ registrations")
	}
	all := make([]drawn, len(regs))
	workers := max(1, runtime.GOMAXPROCS(0))
	per := (len(regs) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers && w*per < len(regs); w++ {
		lo, hi := w*per, min(len(regs), (w+1)*per)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				k := DrawKey(seed, regs[i].ID)
				all[i] = drawn{first: binary.BigEndian.Uint64(k[:8]), i: int32(i)}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b drawn) int { return compareDrawn(seed, regs, a, b) })
	order := make([]int, len(all))
	for k, d := range all {
		order[k] = int(d.i)
	}
	return order
}

// drawn is a registration in the sort of DrawOrder: the first word of its
// key and its index in regs (a window holds far fewer than 2³¹).
type drawn struct {
	first uint64
	i     int32
}

// compareDrawn orders two drawn registrations by their keys' bytes, then by
// id.
func compareDrawn(seed []byte, regs []Registration, a, b drawn) int {
	if c := cmp.Compare(a.first, b.first); c != 0 {
		return c
	}
	ra, rb := &regs[a.i], &regs[b.i]
	ka, kb := DrawKey(seed, ra.ID), DrawKey(seed, rb.ID)
	return cmp.Or(bytes.Compare(ka[:], kb[:]), cmp.Compare(ra.ID, rb.ID))
}

// arrivalOrder returns the indexes of regs by the arrival of their first
// submission, ties by id: the fcfs order.
func arrivalOrder(regs []Registration) []int {
	idx := arrivalIndexes(regs)
	order := make([]int, len(idx))
	for k, i := range idx {
		order[k] = int(i)
	}
	return order
}

// arrivalIndexes is arrivalOrder in four bytes per registration: what
// the arrival deciles of a result are cut from, while the run holds
// everything else it drew.
func arrivalIndexes(regs []Registration) []int32 {
	idx := make([]int32, len(regs))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		ra, rb := &regs[a], &regs[b]
		return cmp.Or(cmp.Compare(ra.Arrival, rb.Arrival), cmp.Compare(ra.ID, rb.ID))
	})
	return idx
}
