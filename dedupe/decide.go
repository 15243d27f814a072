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
// transaction of their own, so that the device rows every worker shares
// are locked for milliseconds, not for the whole batch; their ranks are
// stored, so a crash before the decisions commit replays to the same
// ranks. Then one transaction records the decisions.
func (w *Worker) decide(ctx context.Context, items []*item) error {
	var res batchResult
	start := time.Now()
	pairs := devicePairs(items)
	var counts []DeviceCount
	if len(pairs) > 0 {
		err := w.cfg.Store.Decide(ctx, func(tx Tx) error {
			var err error
			counts, err = tx.CountDevices(ctx, pairs)
			return err
		})
		if err != nil {
			return err
		}
	}
	err := w.cfg.Store.Decide(ctx, func(tx Tx) error {
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

func (w *Worker) decideTx(ctx context.Context, tx Tx, items []*item, counts []DeviceCount) (batchResult, error) {
	now := w.cfg.Now()
	for _, it := range items {
		it.wait, it.dec, it.ref, it.reg = false, nil, nil, false
	}
	// Pairs first made by this batch's submissions are not "before" them:
	// the counts were taken already, and a replay finds them too.
	inBatch := make(map[string]bool, len(items))
	for _, it := range items {
		inBatch[it.o.Receipt] = true
	}

	// 1. Who may be registered already: one lookup for every "maybe seen"
	// (and every claim_seen, which must name the registration).
	var lookup []PersonKey
	maybe := map[PersonKey]bool{}
	bloom := map[bloomKey]*BloomCount{}
	for _, it := range items {
		if !hasPerson(it) {
			continue
		}
		k := PersonKey{it.o.Campaign, it.o.IdentityKey}
		if _, done := maybe[k]; done {
			continue
		}
		m := w.filters.MaybeSeen(k.Campaign, it.shard, k.IdentityKey)
		maybe[k] = m
		if m || it.o.Verdict == prereg.VerdictDuplicate {
			lookup = append(lookup, k)
		}
		if m && it.o.Verdict == prereg.VerdictVerified {
			bc := bloom[bloomKey{k.Campaign, it.shard}]
			if bc == nil {
				bc = &BloomCount{Campaign: k.Campaign, Shard: it.shard}
				bloom[bloomKey{k.Campaign, it.shard}] = bc
			}
			bc.MaybeSeen++
		}
	}
	people := map[PersonKey]*Person{}
	if len(lookup) > 0 {
		var err error
		if people, err = tx.People(ctx, lookup); err != nil {
			return batchResult{}, err
		}
	}
	for _, it := range items {
		k := PersonKey{it.o.Campaign, it.o.IdentityKey}
		if hasPerson(it) && it.o.Verdict == prereg.VerdictVerified && maybe[k] {
			if p := people[k]; p == nil || p.Registration == nil {
				bloom[bloomKey{k.Campaign, it.shard}].FalsePositives++
				w.metrics.falsePositives.Inc()
			}
			maybe[k] = false // count each person once per batch
		}
	}

	// 2. Walk the batch in stream order.
	state := map[PersonKey]*personState{}
	personOf := func(k PersonKey) *personState {
		st := state[k]
		if st == nil {
			st = &personState{devices: map[string]bool{}}
			if p := people[k]; p != nil {
				if p.Registration != nil {
					st.ref = &regRef{reg: p.Registration}
					st.devices[p.Registration.DeviceKey] = true
				}
				for d, first := range p.Devices {
					if !inBatch[first] {
						st.devices[d] = true
					}
				}
			}
			state[k] = st
		}
		return st
	}
	var pending []*regRef
	var contacts []Contact
	for _, it := range items {
		o := &it.o
		if !hasPerson(it) {
			reason := o.Reason
			if o.Verdict != prereg.VerdictRejected || reason == prereg.ReasonNone {
				reason = prereg.ReasonUnprocessable
			}
			it.dec = w.decision(it, prereg.KindRejected, reason, now)
			continue
		}
		k := PersonKey{o.Campaign, o.IdentityKey}
		st := personOf(k)
		var count DeviceCount
		if it.pair >= 0 {
			count = counts[it.pair]
		}
		switch o.Verdict {
		case prereg.VerdictVerified:
			switch {
			case st.ref != nil:
				it.ref = st.ref
				it.dec = w.decision(it, prereg.KindDuplicate, duplicateReason(st, o.DeviceKey, count), now)
				contacts = applyContact(contacts, st.ref, o)
			case count.Rank > it.camp.DeviceCap:
				it.dec = w.decision(it, prereg.KindHeld, prereg.ReasonDeviceLimit, now)
			default:
				nr, err := newRegistration(it)
				if err != nil {
					it.dec = w.decision(it, prereg.KindRejected, prereg.ReasonUnprocessable, now)
					w.log.Warn("dedupe: verified outcome unusable", slog.Any("err", err))
					break
				}
				st.ref = &regRef{pending: nr, by: it}
				pending = append(pending, st.ref)
				it.ref, it.reg = st.ref, true
				it.dec = w.decision(it, prereg.KindRegistered, prereg.ReasonNone, now)
			}
		case prereg.VerdictDuplicate:
			switch {
			case st.ref != nil:
				it.ref = st.ref
				it.dec = w.decision(it, prereg.KindDuplicate, prereg.ReasonClaimSeen, now)
			case it.last:
				// Still not registered after every delivery: the person's
				// verified submission was held (or is lost). Verify skipped
				// the provider, so only an operator may register them.
				it.dec = w.decision(it, prereg.KindHeld, prereg.ReasonClaimSeen, now)
			default:
				// The verified submission this claim was seen with may not
				// be decided yet (verify published out of order, or it is
				// being redelivered after a crash): wait for it.
				it.wait = true
				continue
			}
		}
		if o.DeviceKey != "" {
			st.devices[o.DeviceKey] = true
		}
	}

	// 3. The COPY path for new people.
	if len(pending) > 0 {
		regs := make([]NewRegistration, len(pending))
		for i, r := range pending {
			regs[i] = *r.pending
		}
		got, err := tx.Register(ctx, regs)
		if err != nil {
			return batchResult{}, err
		}
		if len(got) != len(regs) {
			return batchResult{}, fmt.Errorf("register: %d registrations for %d people", len(got), len(regs))
		}
		var conflicts []PersonKey
		for i, r := range pending {
			reg := got[i]
			r.reg = &reg
			if !reg.Inserted {
				conflicts = append(conflicts, PersonKey{reg.Campaign, reg.IdentityKey})
			}
		}
		if len(conflicts) > 0 {
			// Registered meanwhile by another writer (a stale filter, an
			// operator's release): the first submission of this batch is
			// a duplicate after all.
			known, err := tx.People(ctx, conflicts)
			if err != nil {
				return batchResult{}, err
			}
			for _, r := range pending {
				if r.reg.Inserted {
					continue
				}
				it := r.by
				st := &personState{devices: map[string]bool{r.reg.DeviceKey: true}}
				if p := known[PersonKey{r.reg.Campaign, r.reg.IdentityKey}]; p != nil {
					for d, first := range p.Devices {
						if !inBatch[first] {
							st.devices[d] = true
						}
					}
				}
				var count DeviceCount
				if it.pair >= 0 {
					count = counts[it.pair]
				}
				it.reg = false
				it.dec = w.decision(it, prereg.KindDuplicate, duplicateReason(st, it.o.DeviceKey, count), now)
			}
		}
	}

	// 4. Name the registrations, then record.
	var res batchResult
	res.shards = map[PersonKey]int{}
	ds := make([]Decision, 0, len(items))
	for _, it := range items {
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
	if _, err := tx.Record(ctx, ds); err != nil {
		return batchResult{}, err
	}
	if err := tx.UpdateContact(ctx, contacts); err != nil {
		return batchResult{}, err
	}
	if len(bloom) > 0 {
		bcs := make([]BloomCount, 0, len(bloom))
		for _, bc := range bloom {
			bcs = append(bcs, *bc)
		}
		if err := tx.CountBloom(ctx, bcs); err != nil {
			return batchResult{}, err
		}
	}
	return res, nil
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
