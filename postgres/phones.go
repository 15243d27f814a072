package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/keys"
)

// PhoneStore re-seals the phones kept in PostgreSQL under the current
// encryption key, a bounded batch at a time, so that an old key can be
// retired without a migration that rewrites every row at once. Only the
// phones that are opened again are kept sealed: registrations' (notify
// sends to them) and held decisions' (a release copies them into a
// registration).
type PhoneStore struct {
	Pool *pgxpool.Pool
}

// ResealRegistrations re-seals the phones of up to limit registrations
// with an id above after, in id order, and returns the last id it looked
// at (after itself when there is none) and how many it re-sealed. Walking
// the primary key keeps each call's cost bounded however few phones are
// left to re-seal; a caller that keeps the returned id follows the
// registrations as they are added. A phone under a key the sealer does
// not have stops the batch with the *keys.UnknownKeyError.
func (s *PhoneStore) ResealRegistrations(ctx context.Context, r *keys.Sealer, after int64, limit int) (last int64, resealed int, err error) {
	// A purged registration (postgres/purge.go) has no phone: skipped.
	rows, err := s.Pool.Query(ctx, `SELECT id, campaign, coalesce(phone_kid, ''), phone_enc FROM registrations
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return after, 0, fmt.Errorf("reseal registrations' phones: %w", err)
	}
	var u phoneBatch
	last = after
	var id int64
	var campaign string
	var phone prereg.Sealed
	_, err = pgx.ForEachRow(rows, []any{&id, &campaign, &phone.KeyID, &phone.Data}, func() error {
		last = id
		if phone.Data == nil {
			return nil
		}
		return u.add(r, strconv.FormatInt(id, 10), campaign, phone)
	})
	if err != nil {
		return after, 0, fmt.Errorf("reseal registrations' phones: registration %d: %w", id, err)
	}
	if len(u.keys) == 0 {
		return last, 0, nil
	}
	tag, err := s.Pool.Exec(ctx, `UPDATE registrations r SET phone_kid = u.kid, phone_enc = u.enc
		FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bytea[]) AS u(id, kid, enc, old_kid, old_enc)
		WHERE r.id = u.id::bigint AND r.phone_kid = u.old_kid AND r.phone_enc = u.old_enc`,
		u.keys, u.kids, u.encs, u.oldKids, u.oldEncs)
	if err != nil {
		return after, 0, fmt.Errorf("reseal registrations' phones: %w", err)
	}
	return last, int(tag.RowsAffected()), nil
}

// ResealHeld re-seals the phones of up to limit held decisions not yet
// reviewed that are not under the current key, and returns how many; 0
// when none is left. Held decisions are few, but finding them reads the
// decisions table: call it once in a while, not in a tight loop.
func (s *PhoneStore) ResealHeld(ctx context.Context, r *keys.Sealer, limit int) (int, error) {
	rows, err := s.Pool.Query(ctx, `SELECT receipt, campaign, phone_kid, phone_enc FROM decisions
		WHERE kind = 'held' AND review IS NULL AND phone_kid IS NOT NULL AND phone_kid <> $1
		LIMIT $2`, r.Current(), limit)
	if err != nil {
		return 0, fmt.Errorf("reseal held decisions' phones: %w", err)
	}
	var u phoneBatch
	var receipt, campaign string
	var phone prereg.Sealed
	_, err = pgx.ForEachRow(rows, []any{&receipt, &campaign, &phone.KeyID, &phone.Data}, func() error {
		return u.add(r, receipt, campaign, phone)
	})
	if err != nil {
		// The receipt is the citizen's: never in an error.
		return 0, fmt.Errorf("reseal held decisions' phones: %w", err)
	}
	if len(u.keys) == 0 {
		return 0, nil
	}
	tag, err := s.Pool.Exec(ctx, `UPDATE decisions d SET phone_kid = u.kid, phone_enc = u.enc
		FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bytea[]) AS u(receipt, kid, enc, old_kid, old_enc)
		WHERE d.receipt = u.receipt AND d.phone_kid = u.old_kid AND d.phone_enc = u.old_enc`,
		u.keys, u.kids, u.encs, u.oldKids, u.oldEncs)
	if err != nil {
		return 0, fmt.Errorf("reseal held decisions' phones: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// phoneBatch collects a batch's new phones as arrays for one UPDATE, which
// replaces a phone only where it is still the one read: a phone that
// dedupe replaced meanwhile is left as dedupe wrote it, without a lock
// held across the batch.
type phoneBatch struct {
	keys, kids, oldKids []string
	encs, oldEncs       [][]byte
}

func (u *phoneBatch) add(r *keys.Sealer, key, campaign string, phone prereg.Sealed) error {
	out, changed, err := r.Reseal(phone, []byte(campaign))
	if err != nil || !changed {
		return err
	}
	u.keys = append(u.keys, key)
	u.kids, u.encs = append(u.kids, out.KeyID), append(u.encs, out.Data)
	u.oldKids, u.oldEncs = append(u.oldKids, phone.KeyID), append(u.oldEncs, slices.Clone(phone.Data))
	return nil
}

// PhoneKeys counts the phones kept for later use (registrations', held
// decisions') by the key id that seals them: an old key may be retired
// once it counts none. It reads both tables whole: an operator's check,
// not a metric to scrape.
func (s *PhoneStore) PhoneKeys(ctx context.Context) (map[string]int, error) {
	rows, err := s.Pool.Query(ctx, `SELECT phone_kid, count(*) FROM (
			SELECT phone_kid FROM registrations WHERE phone_kid IS NOT NULL
			UNION ALL
			SELECT phone_kid FROM decisions WHERE kind = 'held' AND review IS NULL AND phone_kid IS NOT NULL) p
		GROUP BY phone_kid`)
	if err != nil {
		return nil, fmt.Errorf("count phones by key: %w", err)
	}
	out := map[string]int{}
	var kid string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&kid, &n}, func() error { out[kid] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("count phones by key: %w", err)
	}
	return out, nil
}
