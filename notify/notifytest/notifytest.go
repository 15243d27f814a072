// Package notifytest seeds a database with what the notify stage drains:
// a campaign with one clinic, registrations with sealed phones, their
// appointments and version-1 outbox rows, as the scheduler writes them.
// Tests and `prereg bench notify` share it.
package notifytest

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
)

// Config says what to seed.
type Config struct {
	Campaign   string // default "notify-test"
	N          int    // appointments (and outbox rows)
	Language   string // ko (default) or en
	StatusURL  string // default https://prereg.example.kr/
	ClinicName string // default 강남구보건소
	// Phone gives appointment i's phone; default 010-2xxx-xxxx, distinct.
	Phone  func(i int) string
	Sealer *keys.Sealer
}

// Seeded is what was written.
type Seeded struct {
	Campaign     *campaign.Campaign
	Appointments []int64  // in seeding order
	Phones       []string // Phones[i] belongs to Appointments[i]
	Keys         []string // the version-1 idempotency keys
}

// Seed writes the campaign, registrations, appointments and outbox rows.
func Seed(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Seeded, error) {
	cfg.Campaign = cmp.Or(cfg.Campaign, "notify-test")
	cfg.Language = cmp.Or(cfg.Language, "ko")
	cfg.StatusURL = cmp.Or(cfg.StatusURL, "https://prereg.example.kr/")
	cfg.ClinicName = cmp.Or(cfg.ClinicName, "강남구보건소")
	if cfg.Phone == nil {
		cfg.Phone = func(i int) string { return fmt.Sprintf("010-%04d-%04d", 2000+i/10000, i%10000) }
	}
	if cfg.Sealer == nil {
		return nil, fmt.Errorf("notifytest: a sealer is required")
	}
	yaml := fmt.Sprintf(`id: %s
name: notify test
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: w1, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [0,1,2,3,4,5,6,7,8,9]}
providers:
  - {name: pass, url: "http://127.0.0.1:1", timeout: 2s, concurrency: 4}
shards: 4
schedule: {start: 2021-08-26, days: 1, bands: ["09:00-12:00"]}
notify: {rate: 100, status_url: %q, language: %s}
clinics:
  - {id: c1, name: %q, region: "11680", lat: 37.5, lng: 127.0, capacity: %d}
`, cfg.Campaign, cfg.StatusURL, cfg.Language, cfg.ClinicName, max(cfg.N, 1))
	c, err := campaign.Parse([]byte(yaml), ".")
	if err != nil {
		return nil, fmt.Errorf("notifytest: campaign: %w", err)
	}
	if _, err := (&postgres.CampaignStore{Pool: pool}).Load(ctx, c); err != nil {
		return nil, fmt.Errorf("notifytest: %w", err)
	}
	s := &Seeded{Campaign: c, Phones: make([]string, cfg.N)}
	received := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= cfg.N {
			return nil, nil
		}
		s.Phones[i] = cfg.Phone(i)
		sealed := cfg.Sealer.Seal([]byte(s.Phones[i]), []byte(cfg.Campaign))
		row := []any{cfg.Campaign, fmt.Sprintf("id%09d", i), int32(i % 4), "w1", time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC), "11680",
			sealed.KeyID, sealed.Data, fmt.Sprintf("r%09d", i), "dev", received}
		i++
		return row, nil
	})
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"registrations"}, []string{"campaign", "identity_key", "shard", "window_id",
			"birthdate", "region", "phone_kid", "phone_enc", "first_receipt", "device_key", "received_at"}, src); err != nil {
			return fmt.Errorf("copy registrations: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO appointments (campaign, registration_id, clinic, day, band)
			SELECT campaign, id, 'c1', '2021-08-26', 0 FROM registrations WHERE campaign = $1 ORDER BY identity_key`, cfg.Campaign); err != nil {
			return fmt.Errorf("insert appointments: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE slots SET used = (SELECT count(*) FROM appointments WHERE campaign = $1)
			WHERE campaign = $1 AND clinic = 'c1'`, cfg.Campaign); err != nil {
			return fmt.Errorf("update slot: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO outbox (campaign, appointment_id, version, idempotency_key)
			SELECT campaign, id, 1, campaign || ':' || id || ':v1' FROM appointments WHERE campaign = $1 ORDER BY id`, cfg.Campaign)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("notifytest: seed: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT a.id FROM appointments a JOIN registrations r ON r.id = a.registration_id
		WHERE a.campaign = $1 ORDER BY r.identity_key`, cfg.Campaign)
	if err != nil {
		return nil, fmt.Errorf("notifytest: read appointments: %w", err)
	}
	s.Appointments, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("notifytest: read appointments: %w", err)
	}
	for _, id := range s.Appointments {
		s.Keys = append(s.Keys, prereg.OutboxKey(cfg.Campaign, id, 1))
	}
	return s, nil
}

// NewSealer returns a sealer with a fresh random key, and the key in the
// PREREG_ENC_KEY form so that another process can open the same phones.
func NewSealer() (*keys.Sealer, string, error) {
	env := "t1:" + keys.Random(32)
	ks, err := keys.ParseKeys(env, 32)
	if err != nil {
		return nil, "", err
	}
	s, err := keys.NewSealer(ks)
	return s, env, err
}
