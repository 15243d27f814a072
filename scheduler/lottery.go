package scheduler

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	buf := make([]byte, 0, len(seed)+8)
	buf = append(buf, seed...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(registration))
	return sha256.Sum256(buf)
}

// DrawOrder returns the indexes of regs in the order of the lottery drawn
// with seed: the allocator's order, and what VerifyRound recomputes. Hashing 1.9 million ids is the costly part, so it is spread
// over the CPUs; the keys are sorted as four big-endian words, which orders
// them exactly as their bytes.
func DrawOrder(seed []byte, regs []Registration) []int {
	type drawn struct {
		key [4]uint64
		id  int64
		i   int
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
				all[i] = drawn{id: regs[i].ID, i: i}
				for j := range 4 {
					all[i].key[j] = binary.BigEndian.Uint64(k[8*j:])
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b drawn) int {
		for j := range 4 {
			if c := cmp.Compare(a.key[j], b.key[j]); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.id, b.id)
	})
	order := make([]int, len(all))
	for k, d := range all {
		order[k] = d.i
	}
	return order
}

// arrivalOrder returns the indexes of regs by the arrival of their first
// submission, ties by id: the fcfs order, and the order the arrival
// deciles of a result are cut from.
func arrivalOrder(regs []Registration) []int {
	type arrival struct {
		at, id int64
		i      int
	}
	all := make([]arrival, len(regs))
	for i, r := range regs {
		all[i] = arrival{at: r.ReceivedAt.UnixNano(), id: r.ID, i: i}
	}
	slices.SortFunc(all, func(a, b arrival) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id))
	})
	order := make([]int, len(all))
	for k, a := range all {
		order[k] = a.i
	}
	return order
}
