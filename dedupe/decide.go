package dedupe

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// item is one outcome of a batch on its way to a decision.
type item struct {
	msg   jetstream.Msg
	o     prereg.Outcome
	shard int
	camp  *campaign.Campaign
	last  bool // the final delivery: decide now, whatever is missing

	delivered uint64 // how often JetStream delivered it

	wait bool      // not decided: NAK and try again later
	dec  *Decision // the decision to record
	ref  *regRef   // registered/duplicate: the registration it names
	pair int       // index into the batch's device pairs, or -1
	reg  bool      // this item registers its person (if the insert wins)
}

// regRef is a registration known before the batch or created in it.
type regRef struct {
	reg     *Registration    // known (from the database or after Register)
	pending *NewRegistration // to be inserted by this batch
	by      *item            // the item whose submission registers
	slot    *PhoneSlot       // the phone slot the registration takes, if new
}

// personState is what the batch knows of a person as it walks the items.
type personState struct {
	ref     *regRef
	devices map[string]bool
}

// batchResult is what a committed batch changes outside the database.
type batchResult struct {
	registered []PersonKey
	shards     map[PersonKey]int
}

// decide decides a batch. The device counts are taken first in a short
// transaction of their own (Tx.CountDevices), so that the device locks
// every worker shares are held for a round trip, not for the whole batch;
// their ranks are stored, so a crash before the decisions commit replays
// to the same ranks. Then one transaction records the decisions.
func (w *Worker) decide(ctx context.Context, items []*item) error {
	var res batchResult
	start := time.Now()
	pairs := devicePairs(items)
	err := w.cfg.Store.Decide(ctx, func(tx Tx) error {
		var counts []DeviceCount
		if len(pairs) > 0 {
			var err error
			if counts, err = tx.CountDevices(ctx, pairs); err != nil {
				return err
			}
		}
		var err error
		res, err = w.decideTx(ctx, tx, items, counts)
		return err
	})
	if err != nil {
		return err
	}
	for _, k := range res.registered {
		w.filters.Add(k.Campaign, res.shards[k], k.IdentityKey)
	}
	w.metrics.batch.Observe(time.Since(start).Seconds())
	for _, it := range items {
		if it.dec != nil {
			w.metrics.decisions.WithLabelValues(string(it.dec.Kind), string(it.dec.Reason)).Inc()
		}
	}
	return nil
}

// devicePairs lists the (device, person) pairs of a batch and numbers
// each item's pair.
func devicePairs(items []*item) []Pair {
	var pairs []Pair
	for _, it := range items {
		it.pair = -1
		if hasPerson(it) && it.o.DeviceKey != "" {
			it.pair = len(pairs)
			pairs = append(pairs, Pair{Campaign: it.o.Campaign, Window: it.o.Window, DeviceKey: it.o.DeviceKey, IdentityKey: it.o.IdentityKey, Receipt: it.o.Receipt})
		}
	}
	return pairs
}

// decideTx decides a batch inside the transaction that records it. Each
// step needs what the one before learnt: whom the filters may have seen
// and what the database knows of them, then every item's decision in
// stream order (a person's first verified submission registers, later
// ones are duplicates), then the registrations inserted (a conflict turns
// a registration into a duplicate after all), then the rows recorded.
func (w *Worker) decideTx(ctx context.Context, tx Tx, items []*item, counts []DeviceCount) (batchResult, error) {
	b := w.newBatchTx(items, counts)
	if err := b.lookUpPeople(ctx, tx); err != nil {
		return batchResult{}, err
	}
	b.countBloom()
	if err := b.lockPhones(ctx, tx); err != nil {
		return batchResult{}, err
	}
	b.decideInOrder()
	if err := b.register(ctx, tx); err != nil {
		return batchResult{}, err
	}
	return b.record(ctx, tx)
}

// batchTx is one batch on its way through decideTx: what each step learns
// for the steps after it.
type batchTx struct {
	w      *Worker
	items  []*item
	counts []DeviceCount // by item.pair
	now    time.Time

	// inBatch holds the receipts of the batch: pairs first made by these
	// submissions are not "before" them, since the counts were taken
	// already and a replay finds them too.
	inBatch map[string]bool
	maybe   map[PersonKey]bool // the filters' answer, per person
	bloom   map[bloomKey]*BloomCount
	people  map[PersonKey]*Person // what the database knows of them
	state   map[PersonKey]*personState
	// phones holds, per phone locked for the batch, the people registered
	// with it: the database's, then those the batch registers.
	phones map[PhoneKey]map[string]bool

	pending  []*regRef // registrations this batch inserts
	contacts []Contact // phones a later submission replaces
}

// newBatchTx starts deciding a batch afresh: a retried transaction
// decides again from nothing.
func (w *Worker) newBatchTx(items []*item, counts []DeviceCount) *batchTx {
	b := &batchTx{
		w:       w,
		items:   items,
		counts:  counts,
		now:     w.cfg.Now(),
		inBatch: make(map[string]bool, len(items)),
		maybe:   map[PersonKey]bool{},
		bloom:   map[bloomKey]*BloomCount{},
		people:  map[PersonKey]*Person{},
		state:   map[PersonKey]*personState{},
		phones:  map[PhoneKey]map[string]bool{},
	}
	for _, it := range items {
		it.wait, it.dec, it.ref, it.reg = false, nil, nil, false
		b.inBatch[it.o.Receipt] = true
	}
	return b
}

// lookUpPeople asks the filters about each person and reads, in one
// lookup, everyone they may have seen, and everyone a claim_seen names
// (its decision must name the registration). The phones of the people the
// filters have never seen are locked in the same round trip (Tx.Look):
// those people register unless a phone is full, so lockPhones seldom has
// any left to lock.
func (b *batchTx) lookUpPeople(ctx context.Context, tx Tx) error {
	var lookup []PersonKey
	for _, it := range b.items {
		if !hasPerson(it) {
			continue
		}
		k := PersonKey{it.o.Campaign, it.o.IdentityKey}
		if _, done := b.maybe[k]; done {
			continue
		}
		m := b.w.filters.MaybeSeen(k.Campaign, it.shard, k.IdentityKey)
		b.maybe[k] = m
		if m || it.o.Verdict == prereg.VerdictDuplicate {
			lookup = append(lookup, k)
		}
	}
	phones := b.unseenPeoplesPhones()
	switch {
	case len(phones) > 0:
		people, locked, err := tx.Look(ctx, lookup, phones)
		if err != nil {
			return err
		}
		b.people = people
		b.locked(phones, locked)
	case len(lookup) > 0:
		people, err := tx.People(ctx, lookup)
		if err != nil {
			return err
		}
		b.people = people
	}
	return nil
}

// countBloom counts, per shard, the verified people the filters may have
// seen, and among them those who are not registered: the filters' false
// positive rate is watched from these. Both are counted at a person's
// first verified item, whichever item asked the filters, so that a
// false positive is always among the maybe-seen of its shard.
func (b *batchTx) countBloom() {
	for _, it := range b.items {
		k := PersonKey{it.o.Campaign, it.o.IdentityKey}
		if !hasPerson(it) || it.o.Verdict != prereg.VerdictVerified || !b.maybe[k] {
			continue
		}
		bc := b.bloom[bloomKey{k.Campaign, it.shard}]
		if bc == nil {
			bc = &BloomCount{Campaign: k.Campaign, Shard: it.shard}
			b.bloom[bloomKey{k.Campaign, it.shard}] = bc
		}
		bc.MaybeSeen++
		if p := b.people[k]; p == nil || p.Registration == nil {
			bc.FalsePositives++
			b.w.metrics.falsePositives.Inc()
		}
		b.maybe[k] = false // count each person once per batch
	}
}

// decideInOrder walks the batch in stream order, so that a person's first
// verified submission is the one that registers.
func (b *batchTx) decideInOrder() {
	for _, it := range b.items {
		o := &it.o
		if !hasPerson(it) {
			it.dec = b.w.decision(it, prereg.KindRejected, rejectionReason(o), b.now)
			continue
		}
		st := b.personOf(PersonKey{o.Campaign, o.IdentityKey})
		switch o.Verdict {
		case prereg.VerdictVerified:
			b.decideVerified(it, st)
		case prereg.VerdictDuplicate:
			if !b.decideClaimSeen(it, st) {
				continue
			}
		}
		if o.DeviceKey != "" {
			st.devices[o.DeviceKey] = true
		}
	}
}

// rejectionReason is the reason of an outcome dedupe cannot decide on: the
// verifier's rejection, or unprocessable when it named no person
// otherwise.
func rejectionReason(o *prereg.Outcome) prereg.Reason {
	if o.Verdict != prereg.VerdictRejected || o.Reason == prereg.ReasonNone {
		return prereg.ReasonUnprocessable
	}
	return o.Reason
}

// personOf is what the batch knows of a person: the registration and the
// devices known before the batch, then what the items decided so far
// added.
func (b *batchTx) personOf(k PersonKey) *personState {
	st := b.state[k]
	if st == nil {
		st = &personState{devices: map[string]bool{}}
		if p := b.people[k]; p != nil {
			if p.Registration != nil {
				st.ref = &regRef{reg: p.Registration}
				st.devices[p.Registration.DeviceKey] = true
			}
			addPriorDevices(st.devices, p, b.inBatch)
		}
		b.state[k] = st
	}
	return st
}

// addPriorDevices adds the devices that sent for the person before this
// batch: a device first paired by a submission of the batch is not one
// the person "already used" when that submission is decided.
func addPriorDevices(devices map[string]bool, p *Person, inBatch map[string]bool) {
	for d, first := range p.Devices {
		if !inBatch[first] {
			devices[d] = true
		}
	}
}

// countOf is the device count of an item's (device, person) pair; the
// zero count for an item without a device.
func (b *batchTx) countOf(it *item) DeviceCount {
	if it.pair < 0 {
		return DeviceCount{}
	}
	return b.counts[it.pair]
}

// decideVerified decides a verified submission: a duplicate of the
// person's registration, held when its device sent for more people than
// the cap, or the person's registration.
func (b *batchTx) decideVerified(it *item, st *personState) {
	o := &it.o
	count := b.countOf(it)
	switch {
	case st.ref != nil:
		it.ref = st.ref
		it.dec = b.w.decision(it, prereg.KindDuplicate, duplicateReason(st, o.DeviceKey, count), b.now)
		b.contacts = applyContact(b.contacts, st.ref, o)
	case count.Rank > it.camp.DeviceCap:
		it.dec = b.w.decision(it, prereg.KindHeld, prereg.ReasonDeviceLimit, b.now)
	case b.phoneFull(it):
		it.dec = b.w.decision(it, prereg.KindHeld, prereg.ReasonPhoneCap, b.now)
	default:
		nr, err := newRegistration(it)
		if err != nil {
			it.dec = b.w.decision(it, prereg.KindRejected, prereg.ReasonUnprocessable, b.now)
			b.w.log.Warn("dedupe: verified outcome unusable", slog.Any("err", err))
			return
		}
		st.ref = &regRef{pending: nr, by: it, slot: b.takePhone(it)}
		b.pending = append(b.pending, st.ref)
		it.ref, it.reg = st.ref, true
		it.dec = b.w.decision(it, prereg.KindRegistered, prereg.ReasonNone, b.now)
	}
}

// decideClaimSeen decides a submission verify recognised as a claim
// already seen. It reports false when the item waits instead.
func (b *batchTx) decideClaimSeen(it *item, st *personState) bool {
	switch {
	case st.ref != nil:
		it.ref = st.ref
		it.dec = b.w.decision(it, prereg.KindDuplicate, prereg.ReasonClaimSeen, b.now)
	case it.last:
		// Still not registered after every delivery: the person's
		// verified submission was held (or is lost). Verify skipped
		// the provider, so only an operator may register them.
		it.dec = b.w.decision(it, prereg.KindHeld, prereg.ReasonClaimSeen, b.now)
	default:
		// The verified submission this claim was seen with may not
		// be decided yet (verify published out of order, or it is
		// being redelivered after a crash): wait for it.
		it.wait = true
		return false
	}
	return true
}

// register inserts the batch's new registrations on the COPY path and
// takes back those another writer inserted first.
func (b *batchTx) register(ctx context.Context, tx Tx) error {
	if len(b.pending) == 0 {
		return nil
	}
	regs := make([]NewRegistration, len(b.pending))
	for i, r := range b.pending {
		regs[i] = *r.pending
	}
	got, err := tx.Register(ctx, regs)
	if err != nil {
		return err
	}
	if len(got) != len(regs) {
		return fmt.Errorf("register: %d registrations for %d people", len(got), len(regs))
	}
	var conflicts []PersonKey
	var slots []PhoneSlot
	for i, r := range b.pending {
		reg := got[i]
		r.reg = &reg
		switch {
		case !reg.Inserted:
			conflicts = append(conflicts, PersonKey{reg.Campaign, reg.IdentityKey})
		case r.slot != nil:
			slots = append(slots, *r.slot)
		}
	}
	if len(slots) > 0 {
		if err := tx.TakePhones(ctx, slots); err != nil {
			return err
		}
	}
	if len(conflicts) == 0 {
		return nil
	}
	return b.redecideConflicts(ctx, tx, conflicts)
}

// redecideConflicts decides again the submissions whose person was
// registered meanwhile by another writer (a stale filter, an operator's
// release): the first submission of this batch is a duplicate after all.
func (b *batchTx) redecideConflicts(ctx context.Context, tx Tx, conflicts []PersonKey) error {
	known, err := tx.People(ctx, conflicts)
	if err != nil {
		return err
	}
	for _, r := range b.pending {
		if r.reg.Inserted {
			continue
		}
		it := r.by
		st := &personState{devices: map[string]bool{r.reg.DeviceKey: true}}
		if p := known[PersonKey{r.reg.Campaign, r.reg.IdentityKey}]; p != nil {
			addPriorDevices(st.devices, p, b.inBatch)
		}
		it.reg = false
		it.dec = b.w.decision(it, prereg.KindDuplicate, duplicateReason(st, it.o.DeviceKey, b.countOf(it)), b.now)
	}
	return nil
}

// record names each decision's registration, now that every registration
// has its ID, then writes the decisions, the replaced phones and the
// filters' counts.
func (b *batchTx) record(ctx context.Context, tx Tx) (batchResult, error) {
	res, ds := b.nameRegistrations()
	if _, err := tx.Record(ctx, ds); err != nil {
		return batchResult{}, err
	}
	if err := tx.UpdateContact(ctx, b.contacts); err != nil {
		return batchResult{}, err
	}
	if len(b.bloom) > 0 {
		bcs := make([]BloomCount, 0, len(b.bloom))
		for _, bc := range b.bloom {
			bcs = append(bcs, *bc)
		}
		if err := tx.CountBloom(ctx, bcs); err != nil {
			return batchResult{}, err
		}
	}
	return res, nil
}

// nameRegistrations fills in the registration each decision names and
// lists the decisions to record (waiting items have none), with the
// people the batch registers for the filters.
func (b *batchTx) nameRegistrations() (batchResult, []Decision) {
	res := batchResult{shards: map[PersonKey]int{}}
	ds := make([]Decision, 0, len(b.items))
	for _, it := range b.items {
		if it.dec == nil {
			continue
		}
		if it.ref != nil {
			it.dec.RegistrationID = it.ref.reg.ID
			if it.dec.Kind == prereg.KindDuplicate {
				it.dec.MatchedReceipt = it.ref.reg.FirstReceipt
			}
			if it.reg {
				k := PersonKey{it.o.Campaign, it.o.IdentityKey}
				res.registered = append(res.registered, k)
				res.shards[k] = it.shard
			}
		}
		ds = append(ds, *it.dec)
	}
	return res, ds
}

type bloomKey struct {
	campaign string
	shard    int
}

// hasPerson reports whether an outcome names a person dedupe can decide
// on: verified, or a duplicate verify recognised, with an identity key.
func hasPerson(it *item) bool {
	return (it.o.Verdict == prereg.VerdictVerified || it.o.Verdict == prereg.VerdictDuplicate) && it.o.IdentityKey != ""
}

// duplicateReason says why a submission of a registered person is a
// duplicate: a resubmission from a device the person already used, a
// device that sent for other people too (a proxy), or another device of
// the person.
func duplicateReason(st *personState, device string, count DeviceCount) prereg.Reason {
	switch {
	case st.devices[device]:
		return prereg.ReasonSameDevice
	case count.People > 1:
		return prereg.ReasonProxy
	default:
		return prereg.ReasonOtherDevice
	}
}

// applyContact is the contact rule (see the package doc): a later
// verified submission replaces the registration's phone only when the
// provider verified the new phone as the person's own and the
// registration's phone is not.
func applyContact(cs []Contact, ref *regRef, o *prereg.Outcome) []Contact {
	if !o.PhoneVerified || len(o.Phone.Data) == 0 {
		return cs
	}
	if ref.pending != nil {
		if !ref.pending.PhoneVerified {
			ref.pending.Phone, ref.pending.PhoneVerified = o.Phone, true
		}
		return cs
	}
	if ref.reg.PhoneVerified {
		return cs
	}
	ref.reg.PhoneVerified = true
	return append(cs, Contact{RegistrationID: ref.reg.ID, Phone: o.Phone})
}

// decision builds the decision row of an item.
func (w *Worker) decision(it *item, kind prereg.Kind, reason prereg.Reason, now time.Time) *Decision {
	o := &it.o
	d := &Decision{
		Campaign:      o.Campaign,
		Receipt:       o.Receipt,
		Shard:         it.shard,
		Window:        o.Window,
		Kind:          kind,
		Reason:        reason,
		Provider:      o.Provider,
		IdentityKey:   o.IdentityKey,
		DeviceKey:     o.DeviceKey,
		AddrKey:       o.AddrKey,
		Region:        o.Region,
		Clinic:        o.Clinic,
		Phone:         o.Phone,
		PhoneVerified: o.PhoneVerified,
		ReceivedAt:    o.ReceivedAt,
		DecidedAt:     now,
	}
	if kind == prereg.KindHeld {
		d.PhoneKey = o.PhoneKey
	}
	if t, err := time.Parse(prereg.DateLayout, o.ClaimedBirthdate); err == nil {
		d.Birthdate = &t
	}
	if t, err := time.Parse(prereg.DateLayout, o.Earliest); err == nil {
		d.Earliest = &t
	}
	if d.ReceivedAt.IsZero() {
		d.ReceivedAt = now
	}
	return d
}

// newRegistration builds the registration of a person's first verified
// submission.
func newRegistration(it *item) (*NewRegistration, error) {
	o := &it.o
	birth, err := time.Parse(prereg.DateLayout, o.Birthdate)
	if err != nil {
		return nil, fmt.Errorf("verified birth date: %w", err)
	}
	nr := &NewRegistration{
		Campaign:      o.Campaign,
		IdentityKey:   o.IdentityKey,
		Shard:         prereg.Shard(o.IdentityKey, it.camp.Shards),
		Window:        o.Window,
		Birthdate:     birth,
		Region:        o.Region,
		Clinic:        o.Clinic,
		Phone:         o.Phone,
		PhoneVerified: o.PhoneVerified,
		FirstReceipt:  o.Receipt,
		DeviceKey:     o.DeviceKey,
		ReceivedAt:    o.ReceivedAt,
	}
	if t, err := time.Parse(prereg.DateLayout, o.Earliest); err == nil {
		nr.Earliest = &t
	}
	return nr, nil
}
