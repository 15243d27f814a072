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
	// HMACKeyID is the id of the current HMAC key (keys.Hasher.ID), which
	// a campaign is pinned to when it is first loaded, or first read when
	// it was loaded before it could be pinned (by a command without keys,
	// or before migration 0009). A campaign's pin never changes after, so
	// its identity, device and address keys survive a key rotation.
	// Without it (commands that hold no keys) campaigns are left to be
	// pinned by the first process that has keys.
	HMACKeyID string
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
		// A reload keeps the campaign's key: only an unpinned one takes
		// the current key here.
		err = tx.QueryRow(ctx, `INSERT INTO campaigns (id, name, spec, shards, device_cap, hmac_key) VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''))
			ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, spec = EXCLUDED.spec, shards = EXCLUDED.shards,
			    device_cap = EXCLUDED.device_cap, loaded_at = now(), hmac_key = COALESCE(campaigns.hmac_key, EXCLUDED.hmac_key)
			RETURNING (xmax = 0)`, c.ID, c.Name, spec, c.Shards, c.DeviceCap, s.HMACKeyID).Scan(&inserted)
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
		rows[i] = []any{c.ID, cl.ID, cl.Name, cl.Region, cl.Lat, cl.Lng, cl.Address}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"load_clinics"}, []string{"campaign", "id", "name", "region", "lat", "lng", "address"}, pgx.CopyFromRows(rows)); err != nil {
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
		ON CONFLICT (campaign, id) DO UPDATE SET name = EXCLUDED.name, region = EXCLUDED.region, lat = EXCLUDED.lat, lng = EXCLUDED.lng,
		    address = EXCLUDED.address`); err != nil {
		return 0, 0, fmt.Errorf("upsert clinics: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO slots SELECT * FROM load_slots
		ON CONFLICT (campaign, clinic, day, band) DO UPDATE SET capacity = EXCLUDED.capacity`); err != nil {
		return 0, 0, fmt.Errorf("upsert slots: %w", err)
	}
	return len(c.Clinics), len(c.Clinics) * days * bands, nil
}

// Get reads a campaign (without its clinics), with its HMAC key id.
func (s *CampaignStore) Get(ctx context.Context, id string) (*campaign.Campaign, error) {
	for pinned := false; ; pinned = true {
		var spec []byte
		var key *string
		err := s.Pool.QueryRow(ctx, `SELECT spec, hmac_key FROM campaigns WHERE id = $1`, id).Scan(&spec, &key)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, prereg.ErrCampaignNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("get campaign: %w", err)
		}
		if key == nil && s.HMACKeyID != "" && !pinned {
			if err := s.pin(ctx); err != nil {
				return nil, err
			}
			continue // read the pin, which a concurrent process may have set first
		}
		c, err := decodeSpec(spec)
		if err != nil {
			return nil, err
		}
		if key != nil {
			c.HMACKey = *key
		}
		return c, nil
	}
}

// List reads every campaign (without clinics) with its HMAC key id, and
// the time of the latest load so that a cache can tell when to refresh.
func (s *CampaignStore) List(ctx context.Context) ([]*campaign.Campaign, time.Time, error) {
	out, latest, unpinned, err := s.list(ctx)
	if err == nil && unpinned && s.HMACKeyID != "" {
		if err := s.pin(ctx); err != nil {
			return nil, time.Time{}, err
		}
		out, latest, _, err = s.list(ctx)
	}
	return out, latest, err
}

func (s *CampaignStore) list(ctx context.Context) (out []*campaign.Campaign, latest time.Time, unpinned bool, err error) {
	rows, err := s.Pool.Query(ctx, `SELECT spec, loaded_at, hmac_key FROM campaigns ORDER BY id`)
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("list campaigns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var spec []byte
		var at time.Time
		var key *string
		if err := rows.Scan(&spec, &at, &key); err != nil {
			return nil, time.Time{}, false, fmt.Errorf("list campaigns: %w", err)
		}
		c, err := decodeSpec(spec)
		if err != nil {
			return nil, time.Time{}, false, err
		}
		if key != nil {
			c.HMACKey = *key
		} else {
			unpinned = true
		}
		out = append(out, c)
		if at.After(latest) {
			latest = at
		}
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, false, fmt.Errorf("list campaigns: %w", err)
	}
	return out, latest, unpinned, nil
}

// pin gives every campaign without a key id the current one. Their keys
// were made with the key that was current before rotation was possible,
// which is this process's current key as long as migration 0009 ran
// before the first rotation (docs/SECURITY.md, "Keys and rotation").
// Processes racing to pin agree: the first one's key stays.
func (s *CampaignStore) pin(ctx context.Context) error {
	if _, err := s.Pool.Exec(ctx, `UPDATE campaigns SET hmac_key = $1 WHERE hmac_key IS NULL`, s.HMACKeyID); err != nil {
		return fmt.Errorf("pin campaigns to HMAC key %q: %w", s.HMACKeyID, err)
	}
	return nil
}

// Clinics reads a campaign's clinics, by id, without their capacity; it
// implements intake.ClinicSource.
func (s *CampaignStore) Clinics(ctx context.Context, id string) ([]campaign.Clinic, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, name, region, lat, lng, address FROM clinics WHERE campaign = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("list clinics: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (campaign.Clinic, error) {
		var c campaign.Clinic
		err := r.Scan(&c.ID, &c.Name, &c.Region, &c.Lat, &c.Lng, &c.Address)
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
