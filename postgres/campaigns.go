package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// CampaignStore loads campaigns into PostgreSQL and reads them back.
type CampaignStore struct {
	Pool *pgxpool.Pool
}

// LoadResult says what a load changed.
type LoadResult struct {
	Created bool
	Clinics int
	Slots   int
}

// Load stores a validated campaign in one transaction: the campaign row,
// its windows, and — when the file lists clinics — its clinics and slots
// (one per clinic, day and band). Reloading replaces windows and spec;
// clinics and slots are upserted, and a capacity lower than the slots
// already used is refused by the slots_capacity constraint.
func (s *CampaignStore) Load(ctx context.Context, c *campaign.Campaign) (LoadResult, error) {
	var res LoadResult
	spec, err := c.Spec.MarshalSpec()
	if err != nil {
		return res, fmt.Errorf("load campaign: encode spec: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// Changing the shard count would move identities between shards
		// under registrations already made.
		var oldShards int
		var registered bool
		err := tx.QueryRow(ctx, `SELECT c.shards, EXISTS (SELECT 1 FROM registrations r WHERE r.campaign = c.id)
			FROM campaigns c WHERE c.id = $1 FOR UPDATE`, c.ID).Scan(&oldShards, &registered)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read campaign: %w", err)
		case registered && oldShards != c.Shards:
			return fmt.Errorf("campaign %s already has registrations in %d shards, the file asks for %d: %w", c.ID, oldShards, c.Shards, prereg.ErrConflict)
		}
		var inserted bool
		err = tx.QueryRow(ctx, `INSERT INTO campaigns (id, name, spec, shards, device_cap) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, spec = EXCLUDED.spec, shards = EXCLUDED.shards,
			    device_cap = EXCLUDED.device_cap, loaded_at = now()
			RETURNING (xmax = 0)`, c.ID, c.Name, spec, c.Shards, c.DeviceCap).Scan(&inserted)
		if err != nil {
			return fmt.Errorf("upsert campaign: %w", err)
		}
		res.Created = inserted
		if _, err := tx.Exec(ctx, `DELETE FROM windows WHERE campaign = $1`, c.ID); err != nil {
			return fmt.Errorf("replace windows: %w", err)
		}
		for _, w := range c.Windows {
			digits := make([]int16, len(w.Digits))
			for i, d := range w.Digits {
				digits[i] = int16(d)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO windows (campaign, id, opens, closes, digits, catch_up) VALUES ($1, $2, $3, $4, $5, $6)`,
				c.ID, w.ID, w.Opens, w.Closes, digits, w.CatchUp); err != nil {
				return fmt.Errorf("insert window %s: %w", w.ID, err)
			}
		}
		if len(c.Clinics) == 0 {
			return nil
		}
		n, slots, err := loadClinics(ctx, tx, c)
		res.Clinics, res.Slots = n, slots
		return err
	})
	if err != nil {
		return res, fmt.Errorf("load campaign %s: %w", c.ID, err)
	}
	return res, nil
}

// loadClinics copies clinics and slots into temporary tables and upserts
// them from there: COPY for 14,000 clinics × 14 days × bands is seconds,
// row-by-row inserts would be minutes.
func loadClinics(ctx context.Context, tx pgx.Tx, c *campaign.Campaign) (clinics, slots int, err error) {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE load_clinics (LIKE clinics) ON COMMIT DROP;
		CREATE TEMP TABLE load_slots (LIKE slots) ON COMMIT DROP`); err != nil {
		return 0, 0, fmt.Errorf("temp tables: %w", err)
	}
	rows := make([][]any, len(c.Clinics))
	for i, cl := range c.Clinics {
		rows[i] = []any{c.ID, cl.ID, cl.Name, cl.Region, cl.Lat, cl.Lng}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"load_clinics"}, []string{"campaign", "id", "name", "region", "lat", "lng"}, pgx.CopyFromRows(rows)); err != nil {
		return 0, 0, fmt.Errorf("copy clinics: %w", err)
	}
	days, bands := c.Schedule.Days, len(c.Schedule.Bands)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= len(c.Clinics)*days*bands {
			return nil, nil
		}
		cl := c.Clinics[i/(days*bands)]
		d := (i / bands) % days
		b := i % bands
		i++
		return []any{c.ID, cl.ID, c.Schedule.Day(d), int16(b), int32(cl.Capacity), int32(0)}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"load_slots"}, []string{"campaign", "clinic", "day", "band", "capacity", "used"}, src); err != nil {
		return 0, 0, fmt.Errorf("copy slots: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO clinics SELECT * FROM load_clinics
		ON CONFLICT (campaign, id) DO UPDATE SET name = EXCLUDED.name, region = EXCLUDED.region, lat = EXCLUDED.lat, lng = EXCLUDED.lng`); err != nil {
		return 0, 0, fmt.Errorf("upsert clinics: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO slots SELECT * FROM load_slots
		ON CONFLICT (campaign, clinic, day, band) DO UPDATE SET capacity = EXCLUDED.capacity`); err != nil {
		return 0, 0, fmt.Errorf("upsert slots: %w", err)
	}
	return len(c.Clinics), len(c.Clinics) * days * bands, nil
}

// Get reads a campaign (without its clinics).
func (s *CampaignStore) Get(ctx context.Context, id string) (*campaign.Campaign, error) {
	var spec []byte
	err := s.Pool.QueryRow(ctx, `SELECT spec FROM campaigns WHERE id = $1`, id).Scan(&spec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, prereg.ErrCampaignNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get campaign: %w", err)
	}
	return decodeSpec(spec)
}

// List reads every campaign (without clinics), with the time of the latest
// load so that a cache can tell when to refresh.
func (s *CampaignStore) List(ctx context.Context) ([]*campaign.Campaign, time.Time, error) {
	rows, err := s.Pool.Query(ctx, `SELECT spec, loaded_at FROM campaigns ORDER BY id`)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("list campaigns: %w", err)
	}
	defer rows.Close()
	var out []*campaign.Campaign
	var latest time.Time
	for rows.Next() {
		var spec []byte
		var at time.Time
		if err := rows.Scan(&spec, &at); err != nil {
			return nil, time.Time{}, fmt.Errorf("list campaigns: %w", err)
		}
		c, err := decodeSpec(spec)
		if err != nil {
			return nil, time.Time{}, err
		}
		out = append(out, c)
		if at.After(latest) {
			latest = at
		}
	}
	return out, latest, rows.Err()
}

// Clinics reads a campaign's clinics.
func (s *CampaignStore) Clinics(ctx context.Context, id string) ([]campaign.Clinic, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, name, region, lat, lng FROM clinics WHERE campaign = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("list clinics: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (campaign.Clinic, error) {
		var c campaign.Clinic
		err := r.Scan(&c.ID, &c.Name, &c.Region, &c.Lat, &c.Lng)
		return c, err
	})
}

func decodeSpec(spec []byte) (*campaign.Campaign, error) {
	var f campaign.File
	if err := json.Unmarshal(spec, &f); err != nil {
		return nil, fmt.Errorf("decode campaign spec: %w", err)
	}
	c, err := campaign.FromFile(f)
	if err != nil {
		return nil, fmt.Errorf("stored campaign no longer valid: %w", err)
	}
	return c, nil
}
