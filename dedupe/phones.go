package dedupe

import (
	"cmp"
	"context"
	"slices"

	"github.com/prereg/prereg"
)

// The per-phone cap: a device id is whatever the client says, so a bot
// that makes up a new one for each person passes the device cap; the
// phone is where the SMS with the slot goes, and one phone may be
// registered with at most the campaign's limits.phone_cap people. A
// further person giving that phone is held for review (phone_cap), and
// registers anyway through any other submission of theirs with a phone
// that has room.
//
// The count is shared by every worker: the phones a batch may register
// with are locked (a transaction-scoped lock per phone) and their people
// read before the batch decides, and the slots it takes are written in
// the same transaction as the registrations, so two workers never both
// take a phone's last slot. A person holds one slot, on the phone of the
// submission that registered them; a later submission of theirs with
// another phone is a duplicate and takes none. A registration that is
// cancelled frees its slot (postgres.FreePhoneSlot).

// mayTakePhone reports whether an item may register its person with its
// phone, as far as the batch knows before deciding: verified, with a
// phone key, a person not known to be registered, and a device under its
// cap. Only these items' phones are locked.
func (b *batchTx) mayTakePhone(it *item) bool {
	if !hasPerson(it) || it.o.Verdict != prereg.VerdictVerified || it.o.PhoneKey == "" {
		return false
	}
	if p := b.people[PersonKey{it.o.Campaign, it.o.IdentityKey}]; p != nil && p.Registration != nil {
		return false
	}
	return b.countOf(it).Rank <= it.camp.DeviceCap
}

// unseenPeoplesPhones are the phones the people the filters have never
// seen may register with (verified, with a phone key, a device under its
// cap), in key order: lookUpPeople locks them with its lookup.
func (b *batchTx) unseenPeoplesPhones() []PhoneKey {
	var keys []PhoneKey
	seen := map[PhoneKey]bool{}
	for _, it := range b.items {
		if !hasPerson(it) || it.o.Verdict != prereg.VerdictVerified || it.o.PhoneKey == "" ||
			b.maybe[PersonKey{it.o.Campaign, it.o.IdentityKey}] || b.countOf(it).Rank > it.camp.DeviceCap {
			continue
		}
		k := PhoneKey{it.o.Campaign, it.o.PhoneKey}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sortPhones(keys)
	return keys
}

func sortPhones(keys []PhoneKey) {
	slices.SortFunc(keys, func(a, c PhoneKey) int {
		return cmp.Or(cmp.Compare(a.Campaign, c.Campaign), cmp.Compare(a.Phone, c.Phone))
	})
}

// locked keeps who is registered with each phone locked for the batch.
func (b *batchTx) locked(keys []PhoneKey, got map[PhoneKey]map[string]bool) {
	for _, k := range keys {
		people := got[k]
		if people == nil {
			people = map[string]bool{}
		}
		b.phones[k] = people
	}
}

// lockPhones locks the phones the batch may register people with that
// lookUpPeople did not lock (those of people the filters may have seen
// who turn out not to be registered: false positives), and reads who is
// registered with each, in one round trip when there are any.
func (b *batchTx) lockPhones(ctx context.Context, tx Tx) error {
	var keys []PhoneKey
	seen := map[PhoneKey]bool{}
	for _, it := range b.items {
		if !b.mayTakePhone(it) {
			continue
		}
		k := PhoneKey{it.o.Campaign, it.o.PhoneKey}
		if _, done := b.phones[k]; !done && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		sortPhones(keys)
		got, err := tx.Phones(ctx, keys)
		if err != nil {
			return err
		}
		b.locked(keys, got)
	}
	return b.lookUpHeld(ctx, tx)
}

// lookUpHeld reads the people the batch would hold for a full phone whom
// the filters had not been asked to doubt: a filter is stale when someone
// else registered the person (an operator's release), and a registered
// person's submission is a duplicate, not held. Only bots' phones are
// full, so this costs a lookup in their batches alone.
func (b *batchTx) lookUpHeld(ctx context.Context, tx Tx) error {
	var lookup []PersonKey
	asked := map[PersonKey]bool{}
	for _, it := range b.items {
		k := PersonKey{it.o.Campaign, it.o.IdentityKey}
		if !b.mayTakePhone(it) || asked[k] {
			continue
		}
		if _, known := b.people[k]; known {
			continue
		}
		people := b.phones[PhoneKey{it.o.Campaign, it.o.PhoneKey}]
		if !people[k.IdentityKey] && len(people) >= it.camp.PhoneCap() {
			asked[k] = true
			lookup = append(lookup, k)
		}
	}
	if len(lookup) == 0 {
		return nil
	}
	found, err := tx.People(ctx, lookup)
	if err != nil {
		return err
	}
	for k, p := range found {
		b.people[k] = p
	}
	return nil
}

// phoneFull reports whether the item's phone has its cap of people
// registered with it, not counting the item's own person (a replay finds
// the slot it took).
func (b *batchTx) phoneFull(it *item) bool {
	if it.o.PhoneKey == "" {
		return false
	}
	people, locked := b.phones[PhoneKey{it.o.Campaign, it.o.PhoneKey}]
	if !locked {
		// Every phone an unregistered person may register with is locked
		// (mayTakePhone); anything else is a bug that must not register
		// past the cap.
		return true
	}
	return !people[it.o.IdentityKey] && len(people) >= it.camp.PhoneCap()
}

// takePhone counts the item's person on its phone and returns the slot
// to record once the registration is inserted; nil without a phone key.
func (b *batchTx) takePhone(it *item) *PhoneSlot {
	if it.o.PhoneKey == "" {
		return nil
	}
	b.phones[PhoneKey{it.o.Campaign, it.o.PhoneKey}][it.o.IdentityKey] = true
	return &PhoneSlot{Campaign: it.o.Campaign, PhoneKey: it.o.PhoneKey, IdentityKey: it.o.IdentityKey, Receipt: it.o.Receipt}
}
