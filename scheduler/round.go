package scheduler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// ErrNotFrozen: the window's draw input is not frozen yet.
var ErrNotFrozen = errors.New("the window's lottery input is not frozen")

// Round is a window's frozen draw input: the registrations its lottery
// draws over, fixed when the window closes, and the hash of their canonical
// encoding, made public then.
type Round struct {
	Campaign string `json:"campaign"`
	Window   string `json:"window"`
	// Input is the registration ids, ascending.
	Input     []int64   `json:"-"`
	InputHash string    `json:"input_hash"`
	FrozenAt  time.Time `json:"frozen_at"`
}

// InputEntry is one registration of a round's draw input: its pseudonymous
// id and what the assignment rules read of it, nothing that identifies a
// person.
type InputEntry struct {
	ID       int64  `json:"id"`
	Region   string `json:"region"`
	Clinic   string `json:"clinic,omitempty"`   // preferred clinic
	Earliest string `json:"earliest,omitempty"` // YYYY-MM-DD
}

// InputEntryOf is a registration's entry in a round's input.
func InputEntryOf(r Registration) InputEntry {
	e := InputEntry{ID: r.ID, Region: r.Region, Clinic: r.Clinic}
	if r.Earliest != 0 {
		e.Earliest = r.Earliest.Time().Format(prereg.DateLayout)
	}
	return e
}

// registration is the entry as the planner reads it.
func (e InputEntry) registration() (Registration, error) {
	r := Registration{ID: e.ID, Region: e.Region, Clinic: e.Clinic}
	if e.Earliest != "" {
		t, err := time.Parse(prereg.DateLayout, e.Earliest)
		if err != nil {
			return r, fmt.Errorf("registration %d: earliest: %w", e.ID, err)
		}
		r.Earliest = DateOf(t)
	}
	return r, nil
}

// EncodeInput is the canonical encoding of a round's input, the bytes its
// hash is taken of: one line per registration in ascending id order,
// "id TAB region TAB clinic TAB earliest LF" (empty fields for no clinic, no
// earliest date). The entries must be in strictly ascending id order and
// their fields free of tabs and line feeds, so that one input has exactly
// one encoding.
func EncodeInput(entries []InputEntry) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(entries) * 32)
	enc := inputEncoder{w: &b}
	for _, e := range entries {
		if err := enc.add(e); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// InputHash is the hex SHA-256 of EncodeInput(entries): what is published
// when the window closes.
func InputHash(entries []InputEntry) (string, error) {
	h := NewInputHasher()
	for _, e := range entries {
		if err := h.Add(e); err != nil {
			return "", err
		}
	}
	return h.Sum(), nil
}

// inputEncoder writes EncodeInput's encoding one entry at a time.
type inputEncoder struct {
	w    io.Writer
	line []byte
	last int64
	n    int
}

// add encodes the next entry; it refuses one whose id does not ascend or
// whose fields hold a tab or line feed.
func (enc *inputEncoder) add(e InputEntry) error {
	if enc.n > 0 && e.ID <= enc.last {
		return fmt.Errorf("encode input: registration %d after %d: ids must ascend", e.ID, enc.last)
	}
	for _, f := range []string{e.Region, e.Clinic, e.Earliest} {
		if strings.ContainsAny(f, "\t\n") {
			return fmt.Errorf("encode input: registration %d: a field holds a tab or line feed", e.ID)
		}
	}
	b := strconv.AppendInt(enc.line[:0], e.ID, 10)
	for _, f := range []string{e.Region, e.Clinic, e.Earliest} {
		b = append(b, '\t')
		b = append(b, f...)
	}
	b = append(b, '\n')
	enc.line = b
	enc.last, enc.n = e.ID, enc.n+1
	if _, err := enc.w.Write(b); err != nil {
		return fmt.Errorf("encode input: %w", err)
	}
	return nil
}

// InputHasher takes InputHash of a round's input one entry at a time, so
// that the input can be hashed as it is read instead of held whole.
type InputHasher struct {
	h   hash.Hash
	enc inputEncoder
}

// NewInputHasher starts an InputHash.
func NewInputHasher() *InputHasher {
	h := sha256.New()
	return &InputHasher{h: h, enc: inputEncoder{w: h}}
}

// Add hashes the next entry. Entries must come in strictly ascending id
// order with fields free of tabs and line feeds, as for EncodeInput.
func (h *InputHasher) Add(e InputEntry) error { return h.enc.add(e) }

// Sum is the hex SHA-256 of the entries added: InputHash of them.
func (h *InputHasher) Sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// AdvanceRounds does what the clock asks of a campaign's lotteries: it
// commits a seed for every window that has opened without one, and freezes
// the draw input of every window that has closed without one. Both are
// idempotent (the database keeps the first), so every replica may call it.
func (a *Allocator) AdvanceRounds(ctx context.Context, campaignID string) error {
	c, err := a.store.Campaign(ctx, campaignID)
	if err != nil {
		return fmt.Errorf("advance rounds: %w", err)
	}
	now := a.cfg.Now()
	for _, w := range c.Windows {
		if now.Before(w.Opens) {
			continue
		}
		if err := a.commitIfMissing(ctx, campaignID, w.ID); err != nil {
			return fmt.Errorf("advance rounds: %w", err)
		}
		if now.Before(w.Closes) {
			continue
		}
		if err := a.freeze(ctx, campaignID, w.ID); err != nil {
			return fmt.Errorf("advance rounds: %w", err)
		}
	}
	return nil
}

// CommitOpenWindows commits a seed for every window of the campaign that
// is open now and has none: what loading a campaign does, so that a window
// already open when it is loaded has its commitment before the first
// registration of it, even where no admin role runs. Windows that have
// closed are left to AdvanceRounds (or a run's refusal): a seed committed
// after the close is flagged, never quietly made.
func (a *Allocator) CommitOpenWindows(ctx context.Context, campaignID string) ([]Commitment, error) {
	c, err := a.store.Campaign(ctx, campaignID)
	if err != nil {
		return nil, fmt.Errorf("commit open windows: %w", err)
	}
	now := a.cfg.Now()
	var out []Commitment
	for _, w := range c.Windows {
		if now.Before(w.Opens) || !now.Before(w.Closes) {
			continue
		}
		if err := a.commitIfMissing(ctx, campaignID, w.ID); err != nil {
			return out, fmt.Errorf("commit open windows: %w", err)
		}
		sd, err := a.store.Seed(ctx, campaignID, w.ID)
		if err != nil {
			return out, fmt.Errorf("commit open windows: %w", err)
		}
		out = append(out, sd.Commitment)
	}
	return out, nil
}

// commitIfMissing commits the window's seed unless one is committed.
func (a *Allocator) commitIfMissing(ctx context.Context, campaignID, window string) error {
	_, err := a.store.Seed(ctx, campaignID, window)
	if !errors.Is(err, ErrNoSeed) {
		return err
	}
	cm, err := a.CommitSeed(ctx, campaignID, window)
	if err != nil {
		return err
	}
	a.log.Info("lottery seed committed", slog.String("campaign", campaignID), slog.String("window", window), slog.String("seed_hash", cm.Hash))
	return nil
}

// roundOf is the round a run of the window draws over: its frozen input,
// frozen now if the window has closed and nothing froze it at the close
// (the result's input_frozen_at says so); nil while the window is open.
func (a *Allocator) roundOf(ctx context.Context, campaignID string, w campaign.Window) (*Round, error) {
	r, err := a.store.Round(ctx, campaignID, w.ID)
	if errors.Is(err, ErrNotFrozen) && !a.cfg.Now().Before(w.Closes) {
		if err = a.freeze(ctx, campaignID, w.ID); err == nil {
			r, err = a.store.Round(ctx, campaignID, w.ID)
		}
	}
	switch {
	case errors.Is(err, ErrNotFrozen):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &r, nil
}

// freeze freezes a window's draw input unless it is frozen already.
func (a *Allocator) freeze(ctx context.Context, campaignID, window string) error {
	froze, err := a.store.FreezeRound(ctx, campaignID, window, a.cfg.Now())
	if err != nil {
		return err
	}
	if froze {
		a.log.Info("lottery input frozen", slog.String("campaign", campaignID), slog.String("window", window))
	}
	return nil
}

// RoundData is what the store keeps of a round for its publication.
type RoundData struct {
	Round
	// Entries are the input's registrations, ascending by id, as they are
	// stored now (EncodeInput of them hashes to InputHash unless a
	// registration changed after the freeze).
	Entries []InputEntry
	// Run is the first real lottery run of the window, 0 before it.
	Run           int64
	MaxDistanceKm float64
	Inventory     *Inventory
	// Booked is, per input registration with an appointment, the run that
	// booked it and where.
	Booked map[int64]Booking
}

// Booking is where and by which run a registration was booked.
type Booking struct {
	Run    int64
	Clinic string
	Day    time.Time
	Band   int
}

// RoundFile is the public record of a window's lottery round: everything
// needed to check it, and nothing that identifies a person (registration
// ids are pseudonymous). VerifyRound checks one.
type RoundFile struct {
	Campaign string `json:"campaign"`
	Window   string `json:"window"`

	SeedHash        string     `json:"seed_hash"`
	SeedCommittedAt time.Time  `json:"seed_committed_at"`
	Seed            string     `json:"seed,omitempty"` // hex, once a real run revealed it
	SeedRevealedAt  *time.Time `json:"seed_revealed_at,omitempty"`

	InputHash     string       `json:"input_hash"`
	InputFrozenAt time.Time    `json:"input_frozen_at"`
	Input         []InputEntry `json:"input"`

	// Run is the real lottery run that drew the round (0: not drawn yet);
	// the rest is its outcome.
	Run           int64      `json:"run,omitempty"`
	MaxDistanceKm float64    `json:"max_distance_km,omitempty"`
	Inventory     *Inventory `json:"inventory,omitempty"`
	// Excluded are input registrations an earlier run of another window
	// booked between the freeze and this run: not drawn.
	Excluded    []int64            `json:"excluded,omitempty"`
	Assignments []PublishedBooking `json:"assignments,omitempty"`
	Unassigned  []int64            `json:"unassigned,omitempty"`
	Published   time.Time          `json:"published_at"`
}

// PublishedBooking is one assignment of a round: pseudonymous registration
// id → slot.
type PublishedBooking struct {
	Registration int64  `json:"registration"`
	Clinic       string `json:"clinic"`
	Day          string `json:"day"` // YYYY-MM-DD
	Band         int    `json:"band"`
}

// PublishRound assembles a window's round file from the store: the seed's
// commitment (the seed once revealed), the frozen input, and, once a real
// lottery run drew the round, its inventory and outcome.
func (a *Allocator) PublishRound(ctx context.Context, campaignID, window string) (RoundFile, error) {
	f := RoundFile{Campaign: campaignID, Window: window, Published: a.cfg.Now().UTC()}
	sd, err := a.store.Seed(ctx, campaignID, window)
	if err != nil {
		return f, fmt.Errorf("publish round: %w", err)
	}
	f.SeedHash, f.SeedCommittedAt = sd.Hash, sd.CommittedAt
	if sd.RevealedAt != nil {
		f.Seed, f.SeedRevealedAt = hex.EncodeToString(sd.Value), sd.RevealedAt
	}
	d, err := a.store.RoundData(ctx, campaignID, window)
	if err != nil {
		return f, fmt.Errorf("publish round: %w", err)
	}
	f.InputHash, f.InputFrozenAt, f.Input = d.InputHash, d.FrozenAt, d.Entries
	if d.Run == 0 || f.Seed == "" {
		return f, nil
	}
	f.Run, f.MaxDistanceKm, f.Inventory = d.Run, d.MaxDistanceKm, d.Inventory
	for _, e := range d.Entries {
		b, ok := d.Booked[e.ID]
		switch {
		case ok && b.Run == d.Run:
			f.Assignments = append(f.Assignments, PublishedBooking{Registration: e.ID, Clinic: b.Clinic, Day: b.Day.Format(prereg.DateLayout), Band: b.Band})
		case ok && b.Run < d.Run:
			// Runs of a campaign follow one another under its lock, so
			// an earlier run's appointment existed when this one started.
			f.Excluded = append(f.Excluded, e.ID)
		default:
			// Without an appointment, or booked by a later round: this
			// run left it unassigned.
			f.Unassigned = append(f.Unassigned, e.ID)
		}
	}
	return f, nil
}

// MismatchError names the first thing in a round file that does not check
// out.
type MismatchError struct {
	What string
}

func (e *MismatchError) Error() string { return "lottery round does not verify: " + e.What }

func mismatch(format string, args ...any) error {
	return &MismatchError{What: fmt.Sprintf(format, args...)}
}

// VerifyRound checks a round file with nothing but its content: the seed
// against its commitment, the input against its hash, and every
// assignment against the draw recomputed with DrawOrder and Plan, the code
// the allocator runs. It returns a *MismatchError naming the first
// difference, or nil when everything matches.
func VerifyRound(f *RoundFile) error {
	if f.Seed == "" {
		return mismatch("the seed is not revealed (no real lottery run yet)")
	}
	seed, err := hex.DecodeString(f.Seed)
	if err != nil || len(seed) != SeedSize {
		return mismatch("the seed is not %d bytes of hex", SeedSize)
	}
	if got := SeedHash(seed); got != f.SeedHash {
		return mismatch("the seed hashes to %s, not to the committed %s", got, f.SeedHash)
	}
	got, err := InputHash(f.Input)
	if err != nil {
		return mismatch("the input: %v", err)
	}
	if got != f.InputHash {
		return mismatch("the input (%d registrations) hashes to %s, not to the frozen %s", len(f.Input), got, f.InputHash)
	}
	if f.Run == 0 || f.Inventory == nil {
		return mismatch("the round has no run or no inventory")
	}
	inv := f.Inventory
	if inv.Days <= 0 || inv.Bands <= 0 || len(inv.Capacity) != len(inv.Clinics)*inv.Days*inv.Bands || len(inv.Used) != len(inv.Capacity) {
		return mismatch("the inventory's slots do not match its clinics, days and bands")
	}
	excluded := make(map[int64]bool, len(f.Excluded))
	for _, id := range f.Excluded {
		excluded[id] = true
	}
	regs := make([]Registration, 0, len(f.Input))
	for _, e := range f.Input {
		if excluded[e.ID] {
			delete(excluded, e.ID)
			continue
		}
		r, err := e.registration()
		if err != nil {
			return mismatch("the input: %v", err)
		}
		regs = append(regs, r)
	}
	if ids := sortedKeys(excluded); len(ids) > 0 {
		return mismatch("excluded registration %d is not in the input", ids[0])
	}
	clinics := make(map[string]int, len(inv.Clinics))
	for i, c := range inv.Clinics {
		clinics[c.ID] = i
	}
	published := make(map[int64]int, len(f.Assignments))
	for _, b := range f.Assignments {
		c, ok := clinics[b.Clinic]
		day, err := time.Parse(prereg.DateLayout, b.Day)
		d := int(day.Sub(inv.Start).Hours() / 24)
		if !ok || err != nil || d < 0 || d >= inv.Days || b.Band < 0 || b.Band >= inv.Bands {
			return mismatch("registration %d: assigned to a slot outside the inventory (%s %s band %d)", b.Registration, b.Clinic, b.Day, b.Band)
		}
		if _, dup := published[b.Registration]; dup {
			return mismatch("registration %d is assigned twice", b.Registration)
		}
		published[b.Registration] = inv.Slot(c, d, b.Band)
	}
	unassigned := make(map[int64]bool, len(f.Unassigned))
	for _, id := range f.Unassigned {
		if _, dup := published[id]; dup || unassigned[id] {
			return mismatch("registration %d is published twice", id)
		}
		unassigned[id] = true
	}
	order := DrawOrder(seed, regs)
	plan := Plan(inv, regs, order, f.MaxDistanceKm, nil)
	for k, o := range plan {
		id := o.Registration
		slot, assigned := published[id]
		switch {
		case o.Assigned() && !assigned:
			return mismatch("registration %d (drawn %d of %d): recomputed %s, published unassigned", id, k+1, len(plan), inv.describe(int(o.Slot)))
		case o.Assigned() && slot != int(o.Slot):
			return mismatch("registration %d (drawn %d of %d): recomputed %s, published %s", id, k+1, len(plan), inv.describe(int(o.Slot)), inv.describe(slot))
		case !o.Assigned() && assigned:
			return mismatch("registration %d (drawn %d of %d): recomputed unassigned (%s), published %s", id, k+1, len(plan), o.Reason(), inv.describe(slot))
		case !o.Assigned() && !unassigned[id]:
			return mismatch("registration %d (drawn %d of %d): recomputed unassigned (%s), published nowhere", id, k+1, len(plan), o.Reason())
		}
		delete(published, id)
		delete(unassigned, id)
	}
	for _, ids := range [][]int64{sortedKeys(published), sortedKeys(unassigned)} {
		if len(ids) > 0 {
			return mismatch("registration %d is published but was not drawn", ids[0])
		}
	}
	return nil
}

func sortedKeys[V any](m map[int64]V) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// describe names a slot for a mismatch: clinic, day and band.
func (inv *Inventory) describe(slot int) string {
	c, d, b := inv.slotOf(slot)
	return fmt.Sprintf("%s %s band %d", inv.Clinics[c].ID, inv.Start.AddDate(0, 0, d).Format(prereg.DateLayout), b)
}
