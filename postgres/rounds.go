package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prereg/prereg/scheduler"
)

// FreezeRound freezes the window's draw input unless it is frozen already:
// the registrations a run of the window would select now, their ids and
// the hash of their canonical encoding, in one repeatable-read
// transaction. A session advisory lock on the window makes replicas that
// freeze at once wait for the first instead of each reading the whole
// window; the primary key keeps the first freeze in any case.
func (s *AllocationStore) FreezeRound(ctx context.Context, campaignID, window string, at time.Time) (bool, error) {
	// What every tick of every replica asks once the window is frozen.
	var frozen bool
	if err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lottery_rounds WHERE campaign = $1 AND window_id = $2)`,
		campaignID, window).Scan(&frozen); err != nil {
		return false, fmt.Errorf("freeze round: look for it: %w", err)
	}
	if frozen {
		return false, nil
	}
	// A session lock on a connection of its own, taken before the
	// transaction: a repeatable-read snapshot taken before the wait would
	// not see the round another replica froze meanwhile.
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("freeze round: acquire: %w", err)
	}
	defer conn.Release()
	key := "prereg:lottery-round:" + campaignID + "/" + window
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
		_ = conn.Conn().Close(context.WithoutCancel(ctx)) // it may hold the lock after all
		return false, fmt.Errorf("freeze round: lock: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
			_ = conn.Conn().Close(ctx)
		}
	}()
	var froze bool
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lottery_rounds WHERE campaign = $1 AND window_id = $2)`,
			campaignID, window).Scan(&frozen); err != nil {
			return fmt.Errorf("look for the round: %w", err)
		}
		if frozen {
			return nil
		}
		// Hashed as it is read, in id order: only the ids are kept (an
		// empty input is an empty array, not NULL).
		ids := []int64{}
		h := scheduler.NewInputHasher()
		err := eachRegistration(ctx, tx, scheduler.RunRecord{Campaign: campaignID, Window: window, Bound: math.MaxInt64}, true,
			func(r *scheduler.Registration) error {
				ids = append(ids, r.ID)
				return h.Add(scheduler.InputEntryOf(*r))
			})
		if err != nil {
			return err
		}
		hash := h.Sum()
		tag, err := tx.Exec(ctx, `INSERT INTO lottery_rounds (campaign, window_id, input_ids, input_hash, frozen_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (campaign, window_id) DO NOTHING`, campaignID, window, ids, hash, at)
		if err != nil {
			return fmt.Errorf("store round: %w", err)
		}
		froze = tag.RowsAffected() == 1
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("freeze round of %s/%s: %w", campaignID, window, err)
	}
	return froze, nil
}

// Round reads the window's frozen round; scheduler.ErrNotFrozen when none.
func (s *AllocationStore) Round(ctx context.Context, campaignID, window string) (scheduler.Round, error) {
	r := scheduler.Round{Campaign: campaignID, Window: window}
	err := s.Pool.QueryRow(ctx, `SELECT input_ids, input_hash, frozen_at FROM lottery_rounds WHERE campaign = $1 AND window_id = $2`,
		campaignID, window).Scan(&r.Input, &r.InputHash, &r.FrozenAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, scheduler.ErrNotFrozen
	}
	if err != nil {
		return r, fmt.Errorf("read round: %w", err)
	}
	return r, nil
}

// RecordRoundRun records the run that draws the window's round and the
// inventory it plans against, unless a run is recorded already (a resumed
// run recomputes the same inventory; a later run of the window is a rerun
// of a drawn round).
func (s *AllocationStore) RecordRoundRun(ctx context.Context, campaignID, window string, run int64, inv *scheduler.Inventory, maxKm float64) error {
	body, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("record round run: %w", err)
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE lottery_rounds SET run_id = $3, inventory = $4, max_distance_km = $5
		WHERE campaign = $1 AND window_id = $2 AND run_id IS NULL`, campaignID, window, run, body, maxKm); err != nil {
		return fmt.Errorf("record round run: %w", err)
	}
	return nil
}

// RoundData reads what a round file publishes: the frozen round, its
// registrations' entries as stored now, its run and inventory, and where
// the input's registrations are booked; scheduler.ErrNotFrozen when the
// window's input is not frozen.
func (s *AllocationStore) RoundData(ctx context.Context, campaignID, window string) (scheduler.RoundData, error) {
	d := scheduler.RoundData{Booked: map[int64]scheduler.Booking{}}
	err := pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		d.Campaign, d.Window = campaignID, window
		var run *int64
		var maxKm *float64
		var inv []byte
		err := tx.QueryRow(ctx, `SELECT input_ids, input_hash, frozen_at, run_id, max_distance_km, inventory
			FROM lottery_rounds WHERE campaign = $1 AND window_id = $2`, campaignID, window).
			Scan(&d.Input, &d.InputHash, &d.FrozenAt, &run, &maxKm, &inv)
		if errors.Is(err, pgx.ErrNoRows) {
			return scheduler.ErrNotFrozen
		}
		if err != nil {
			return fmt.Errorf("read round: %w", err)
		}
		if run != nil {
			d.Run = *run
		}
		if maxKm != nil {
			d.MaxDistanceKm = *maxKm
		}
		if inv != nil {
			d.Inventory = new(scheduler.Inventory)
			if err := json.Unmarshal(inv, d.Inventory); err != nil {
				return fmt.Errorf("read round inventory: %w", err)
			}
		}
		rows, err := tx.Query(ctx, `SELECT g.id, g.region, coalesce(g.clinic, ''), coalesce(to_char(g.earliest, 'YYYY-MM-DD'), ''),
			    a.run_id, coalesce(a.clinic, ''), a.day, coalesce(a.band, 0)
			FROM unnest($1::int8[]) AS f(id) JOIN registrations g ON g.id = f.id
			LEFT JOIN appointments a ON a.registration_id = g.id
			ORDER BY g.id`, d.Input)
		if err != nil {
			return fmt.Errorf("read round registrations: %w", err)
		}
		var e scheduler.InputEntry
		var b scheduler.Booking
		var bookedBy *int64
		var day *time.Time
		var band int16
		_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.Region, &e.Clinic, &e.Earliest, &bookedBy, &b.Clinic, &day, &band}, func() error {
			d.Entries = append(d.Entries, e)
			if bookedBy != nil && day != nil {
				b.Run, b.Day, b.Band = *bookedBy, *day, int(band)
				d.Booked[e.ID] = b
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read round registrations: %w", err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, scheduler.ErrNotFrozen) {
			return d, err
		}
		return d, fmt.Errorf("round data of %s/%s: %w", campaignID, window, err)
	}
	return d, nil
}
