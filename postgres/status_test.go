package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

const statusCampaignYAML = `
id: status-test
name: Status test
cohort: {born_from: 1970-01-01, born_to: 2000-12-31}
windows:
  - {id: d9, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [9]}
providers:
  - {name: pass, url: http://127.0.0.1:1}
shards: 4
schedule: {start: 2021-08-26, days: 2, bands: ["09:00-12:00", "13:00-15:00"]}
clinics:
  - {id: c1, name: Clinic 1, region: "11680", lat: 37.5, lng: 127.0, capacity: 10}
`

// statusCampaign loads the campaign the status tests decide submissions of.
func statusCampaign(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	c, err := campaign.Parse([]byte(statusCampaignYAML), "")
	require.NoError(tb, err)
	_, err = (&postgres.CampaignStore{Pool: pool}).Load(context.Background(), c)
	require.NoError(tb, err)
}

func statusExec(tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	tb.Helper()
	_, err := pool.Exec(context.Background(), sql, args...)
	require.NoError(tb, err, sql)
}

// statusRegister inserts a registration and its registered decision.
func statusRegister(tb testing.TB, pool *pgxpool.Pool, receipt, identity string) int64 {
	tb.Helper()
	var id int64
	err := pool.QueryRow(context.Background(), `INSERT INTO registrations
		(campaign, identity_key, shard, window_id, birthdate, region, phone_kid, phone_enc, first_receipt, device_key, received_at)
		VALUES ('status-test', $1, 0, 'd9', '1990-08-19', '11680', 'k', '\x00', $2, 'dev', now()) RETURNING id`, identity, receipt).Scan(&id)
	require.NoError(tb, err)
	statusDecide(tb, pool, receipt, "registered", "", &id, nil)
	return id
}

func statusDecide(tb testing.TB, pool *pgxpool.Pool, receipt, kind, reason string, reg *int64, review *string) {
	tb.Helper()
	statusExec(tb, pool, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, registration_id,
		matched_receipt, device_key, birthdate, received_at, review)
		VALUES ('status-test', $1, 0, 'd9', $2, $3, 'pass', $4, CASE WHEN $2 = 'duplicate' THEN 'first' END, 'dev', '1990-08-19', now(), $5)`,
		receipt, kind, reason, reg, review)
}

func statusAppoint(tb testing.TB, pool *pgxpool.Pool, reg int64, status string, outbox ...string) {
	tb.Helper()
	var id int64
	err := pool.QueryRow(context.Background(), `INSERT INTO appointments (campaign, registration_id, clinic, day, band, status)
		VALUES ('status-test', $1, 'c1', '2021-08-27', 1, $2) RETURNING id`, reg, status).Scan(&id)
	require.NoError(tb, err)
	for i, state := range outbox {
		statusExec(tb, pool, `INSERT INTO outbox (campaign, appointment_id, version, idempotency_key, state) VALUES ('status-test', $1, $2, $3, $4)`,
			id, i+1, prereg.OutboxKey("status-test", id, i+1), state)
	}
}

func TestStatusStore(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	statusCampaign(t, db.Pool)
	pool := db.Pool
	ctx := context.Background()

	registered := statusRegister(t, pool, "r-registered", "id-1")
	scheduled := statusRegister(t, pool, "r-scheduled", "id-2")
	statusAppoint(t, pool, scheduled, "scheduled", "pending")
	notified := statusRegister(t, pool, "r-notified", "id-3")
	statusAppoint(t, pool, notified, "scheduled", "sent")
	delivered := statusRegister(t, pool, "r-delivered", "id-4")
	statusAppoint(t, pool, delivered, "scheduled", "delivered", "pending") // a resend after delivery
	cancelled := statusRegister(t, pool, "r-cancelled", "id-5")
	statusAppoint(t, pool, cancelled, "cancelled", "sent")
	statusDecide(t, pool, "r-duplicate", "duplicate", "other_device", &registered, nil)
	statusDecide(t, pool, "r-held", "held", "device_limit", nil, nil)
	rejected := "rejected"
	statusDecide(t, pool, "r-held-rejected", "held", "device_limit", nil, &rejected)
	released := "released"
	heldReg := statusRegister(t, pool, "r-first-of-held", "id-6")
	statusDecide(t, pool, "r-held-released", "held", "device_limit", &heldReg, &released)
	statusDecide(t, pool, "r-rejected", "rejected", "birthdate_mismatch", nil, nil)

	var hasUnassigned bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_name = 'registrations' AND column_name = 'unassigned_reason')`).Scan(&hasUnassigned))
	unassigned := statusRegister(t, pool, "r-unassigned", "id-7")
	if hasUnassigned {
		statusExec(t, pool, `UPDATE registrations SET unassigned_reason = 'no_capacity' WHERE id = $1`, unassigned)
	}

	slot := &intake.Slot{Clinic: "c1", Day: time.Date(2021, 8, 27, 0, 0, 0, 0, time.UTC), Band: 1}
	tests := []struct {
		receipt string
		status  prereg.Status
		reason  prereg.Reason
		slot    *intake.Slot
	}{
		{"r-registered", prereg.StatusRegistered, "", nil},
		{"r-scheduled", prereg.StatusScheduled, "", slot},
		{"r-notified", prereg.StatusNotified, "", slot},
		{"r-delivered", prereg.StatusDelivered, "", slot},
		{"r-cancelled", prereg.StatusCancelled, "", slot},
		{"r-duplicate", prereg.StatusDuplicate, prereg.ReasonOtherDevice, nil},
		{"r-held", prereg.StatusHeld, prereg.ReasonDeviceLimit, nil},
		{"r-held-rejected", prereg.StatusRejected, prereg.ReasonOperatorRejected, nil},
		{"r-held-released", prereg.StatusRegistered, "", nil},
		{"r-rejected", prereg.StatusRejected, prereg.ReasonBirthdateMismatch, nil},
	}
	if hasUnassigned {
		tests = append(tests, struct {
			receipt string
			status  prereg.Status
			reason  prereg.Reason
			slot    *intake.Slot
		}{"r-unassigned", prereg.StatusUnassigned, "", nil})
	}
	store := &postgres.StatusStore{Pool: pool}
	for _, tt := range tests {
		t.Run(tt.receipt, func(t *testing.T) {
			d, err := store.Status(ctx, tt.receipt)
			require.NoError(t, err)
			require.Equal(t, "status-test", d.Campaign)
			require.Equal(t, tt.status, d.Status)
			require.Equal(t, tt.reason, d.Reason)
			require.True(t, d.Birthdate.Equal(time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC)))
			if tt.slot == nil {
				require.Nil(t, d.Slot)
				return
			}
			require.NotNil(t, d.Slot)
			require.Equal(t, tt.slot.Clinic, d.Slot.Clinic)
			require.Equal(t, tt.slot.Band, d.Slot.Band)
			require.True(t, tt.slot.Day.Equal(d.Slot.Day))
		})
	}
	_, err := store.Status(ctx, "r-undecided")
	require.ErrorIs(t, err, prereg.ErrNotFound)
}
