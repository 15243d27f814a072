package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/prereg/prereg/dedupe"
)

// phoneLockClass is the first key of the phones' advisory locks, a
// namespace of its own beside the devices' (deviceLockClass).
const phoneLockClass = 0x70686f6e // "phon"

// phoneLockKey is the second key of a phone's advisory lock. Two phones
// that hash alike share a lock, which only serialises them.
func phoneLockKey(k dedupe.PhoneKey) int32 {
	h := fnv.New32a()
	h.Write([]byte(k.Campaign))
	h.Write([]byte{0})
	h.Write([]byte(k.Phone))
	return int32(h.Sum32())
}

// Phones locks the phones with transaction-scoped advisory locks, taken in
// key order so that two workers cannot deadlock on them, and reads the
// people registered with each, in one round trip. The locks are held
// until the batch's transaction ends: a phone's last slot is taken by one
// worker only.
func (t *dedupeTx) Phones(ctx context.Context, phones []dedupe.PhoneKey) (map[dedupe.PhoneKey]map[string]bool, error) {
	_, locked, err := t.Look(ctx, nil, phones)
	return locked, err
}

// queuePhones queues the locks and reads of Phones and returns the
// function that reads their answers.
func queuePhones(b *pgx.Batch, phones []dedupe.PhoneKey) func(pgx.BatchResults) (map[dedupe.PhoneKey]map[string]bool, error) {
	out := make(map[dedupe.PhoneKey]map[string]bool, len(phones))
	if len(phones) == 0 {
		return func(pgx.BatchResults) (map[dedupe.PhoneKey]map[string]bool, error) { return out, nil }
	}
	locks := make([]int32, 0, len(phones))
	byCampaign := map[string][]string{}
	for _, k := range phones {
		out[k] = map[string]bool{}
		locks = append(locks, phoneLockKey(k))
		byCampaign[k.Campaign] = append(byCampaign[k.Campaign], k.Phone)
	}
	slices.Sort(locks)
	locks = slices.Compact(locks)
	b.Queue(`SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int[]) AS k`, phoneLockClass, locks)
	for c, keys := range byCampaign {
		b.Queue(`SELECT pp.campaign, pp.phone_key, pp.identity_key
			FROM unnest($2::text[]) AS k(phone_key),
			LATERAL (SELECT * FROM phone_people pp WHERE pp.campaign = $1 AND pp.phone_key = k.phone_key OFFSET 0) pp`, c, keys)
	}
	return func(br pgx.BatchResults) (map[dedupe.PhoneKey]map[string]bool, error) {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("phones: lock: %w", err)
		}
		for range byCampaign {
			rows, _ := br.Query()
			var k dedupe.PhoneKey
			var person string
			_, err := pgx.ForEachRow(rows, []any{&k.Campaign, &k.Phone, &person}, func() error {
				if out[k] == nil {
					out[k] = map[string]bool{}
				}
				out[k][person] = true
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("phones: read: %w", err)
			}
		}
		return out, nil
	}
}

// TakePhones records the phone slots of the registrations the batch
// inserted; the statement goes with the batch's next round trip, before
// the COMMIT that releases the phones' locks.
func (t *dedupeTx) TakePhones(ctx context.Context, slots []dedupe.PhoneSlot) error {
	if len(slots) > 0 {
		t.queue("take phone slots", takePhonesSQL, phoneSlotArgs(slots)...)
	}
	return nil
}

func takePhones(ctx context.Context, tx pgx.Tx, slots []dedupe.PhoneSlot) error {
	if len(slots) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, takePhonesSQL, phoneSlotArgs(slots)...); err != nil {
		return fmt.Errorf("take phone slots: %w", err)
	}
	return nil
}

const takePhonesSQL = `INSERT INTO phone_people (campaign, phone_key, identity_key, first_receipt)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
	ON CONFLICT DO NOTHING`

func phoneSlotArgs(slots []dedupe.PhoneSlot) []any {
	cs, ps, is, rs := make([]string, len(slots)), make([]string, len(slots)), make([]string, len(slots)), make([]string, len(slots))
	for i, s := range slots {
		cs[i], ps[i], is[i], rs[i] = s.Campaign, s.PhoneKey, s.IdentityKey, s.Receipt
	}
	return []any{cs, ps, is, rs}
}

// FreePhoneSlot frees the phone slot a person's registration holds, in
// the caller's transaction: for a registration that ends (cancelled), so
// that the phone may register someone else. It returns how many slots it
// freed (0 or 1).
func FreePhoneSlot(ctx context.Context, tx pgx.Tx, campaign, identityKey string) (int64, error) {
	tag, err := tx.Exec(ctx, `DELETE FROM phone_people WHERE campaign = $1 AND identity_key = $2`, campaign, identityKey)
	if err != nil {
		return 0, fmt.Errorf("free phone slot: %w", err)
	}
	return tag.RowsAffected(), nil
}
