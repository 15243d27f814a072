package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

// DeviceKeyPrefix is how much of a device's keyed hash reports show: enough
// to tell devices apart and to find their decisions, a pseudonym only.
const DeviceKeyPrefix = 16

// DedupeReport builds the auditor's report of a campaign, of one window
// when window is not "". top is how many devices to list (10 when 0).
func (s *DedupeStore) DedupeReport(ctx context.Context, campaign, window string, top int, now time.Time) (*dedupe.Report, error) {
	var exists bool
	if err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1)`, campaign).Scan(&exists); err != nil {
		return nil, fmt.Errorf("dedupe report: %w", err)
	}
	if !exists {
		return nil, prereg.ErrCampaignNotFound
	}
	if top <= 0 {
		top = 10
	}
	r := &dedupe.Report{Campaign: campaign, Window: window, GeneratedAt: now, Totals: dedupe.NewCounts()}
	b := &pgx.Batch{}
	b.Queue(`SELECT window_id, date_trunc('hour', received_at), kind, reason, count(*)
		FROM decisions WHERE campaign = $1 AND ($2 = '' OR window_id = $2)
		GROUP BY 1, 2, 3, 4`, campaign, window)
	b.Queue(`SELECT window_id, count(*) FROM registrations WHERE campaign = $1 AND ($2 = '' OR window_id = $2) GROUP BY 1`, campaign, window)
	b.Queue(`WITH top AS (
			SELECT device_key, count(*) AS people FROM device_people
			WHERE campaign = $1 AND ($2 = '' OR window_id = $2)
			GROUP BY device_key ORDER BY people DESC, device_key LIMIT $3)
		SELECT left(t.device_key, $4), t.people,
			(SELECT count(*) FROM decisions d WHERE d.campaign = $1 AND d.device_key = t.device_key AND ($2 = '' OR d.window_id = $2)),
			(SELECT count(*) FROM decisions d WHERE d.campaign = $1 AND d.device_key = t.device_key AND ($2 = '' OR d.window_id = $2) AND d.kind = 'held')
		FROM top t ORDER BY t.people DESC, t.device_key`, campaign, window, top, DeviceKeyPrefix)
	b.Queue(`SELECT coalesce(sum(maybe_seen), 0), coalesce(sum(false_positives), 0) FROM dedupe_counters WHERE campaign = $1`, campaign)
	b.Queue(`SELECT count(*) FILTER (WHERE review IS NULL), count(*) FILTER (WHERE review = 'released'), count(*) FILTER (WHERE review = 'rejected')
		FROM decisions WHERE campaign = $1 AND kind = 'held' AND ($2 = '' OR window_id = $2)`, campaign, window)
	b.Queue(`SELECT people, count(*) FROM (
			SELECT max(rank) AS people FROM device_people
			WHERE campaign = $1 AND ($2 = '' OR window_id = $2)
			GROUP BY window_id, device_key) d
		GROUP BY people ORDER BY people`, campaign, window)
	b.Queue(`SELECT device_cap FROM campaigns WHERE id = $1`, campaign)
	br := s.Pool.SendBatch(ctx, b)
	defer br.Close()

	windows := map[string]*dedupe.WindowCounts{}
	hours := map[time.Time]*dedupe.HourCounts{}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("dedupe report: decisions: %w", err)
	}
	for rows.Next() {
		var win, kind, reason string
		var hour time.Time
		var n int64
		if err := rows.Scan(&win, &hour, &kind, &reason, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("dedupe report: decisions: %w", err)
		}
		k, rs := prereg.Kind(kind), prereg.Reason(reason)
		r.Totals.Add(k, rs, n)
		if windows[win] == nil {
			windows[win] = &dedupe.WindowCounts{Window: win, Counts: dedupe.NewCounts()}
		}
		windows[win].Add(k, rs, n)
		if hours[hour] == nil {
			hours[hour] = &dedupe.HourCounts{Hour: hour, Counts: dedupe.NewCounts()}
		}
		hours[hour].Add(k, rs, n)
		if k == prereg.KindDuplicate && rs == prereg.ReasonClaimSeen || k == prereg.KindHeld && rs == prereg.ReasonClaimSeen {
			r.ProviderCallsSaved += n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dedupe report: decisions: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("dedupe report: registrations: %w", err)
	}
	for rows.Next() {
		var win string
		var n int64
		if err := rows.Scan(&win, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("dedupe report: registrations: %w", err)
		}
		r.Totals.PeopleRegistered += n
		if windows[win] == nil {
			windows[win] = &dedupe.WindowCounts{Window: win, Counts: dedupe.NewCounts()}
		}
		windows[win].PeopleRegistered = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dedupe report: registrations: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("dedupe report: devices: %w", err)
	}
	r.TopDevices, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (dedupe.DeviceRow, error) {
		var d dedupe.DeviceRow
		err := row.Scan(&d.Device, &d.People, &d.Submissions, &d.Held)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("dedupe report: devices: %w", err)
	}
	if err := br.QueryRow().Scan(&r.Bloom.MaybeSeen, &r.Bloom.FalsePositives); err != nil {
		return nil, fmt.Errorf("dedupe report: bloom: %w", err)
	}
	if err := br.QueryRow().Scan(&r.Reviews.Pending, &r.Reviews.Released, &r.Reviews.Rejected); err != nil {
		return nil, fmt.Errorf("dedupe report: reviews: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("dedupe report: device people: %w", err)
	}
	r.DevicePeople, err = pgx.CollectRows(rows, pgx.RowToStructByPos[dedupe.DevicePeopleRow])
	if err != nil {
		return nil, fmt.Errorf("dedupe report: device people: %w", err)
	}
	if r.DevicePeople == nil {
		r.DevicePeople = []dedupe.DevicePeopleRow{}
	}
	if err := br.QueryRow().Scan(&r.DeviceCap); err != nil {
		return nil, fmt.Errorf("dedupe report: device cap: %w", err)
	}
	for _, w := range windows {
		r.Windows = append(r.Windows, *w)
	}
	slices.SortFunc(r.Windows, func(a, b dedupe.WindowCounts) int {
		switch {
		case a.Window < b.Window:
			return -1
		case a.Window > b.Window:
			return 1
		}
		return 0
	})
	for _, h := range hours {
		r.Hours = append(r.Hours, *h)
	}
	slices.SortFunc(r.Hours, func(a, b dedupe.HourCounts) int { return a.Hour.Compare(b.Hour) })
	if r.TopDevices == nil {
		r.TopDevices = []dedupe.DeviceRow{}
	}
	if err := s.reportCancellations(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// ScoredDecision is one decision as the demo scores dedupe against the
// synthetic truth: which submission, what became of it, for whom.
type ScoredDecision struct {
	Receipt     string
	Kind        prereg.Kind
	Reason      prereg.Reason
	IdentityKey string // "" when the provider gave no identity
	// RegisteredIdentity is the identity key of the registration the
	// decision names ("" for none).
	RegisteredIdentity string
	DeviceKey          string
	// RegistrationID is the registration the decision names (0 for none).
	RegistrationID int64
}

// DedupeDecisions calls fn for every decision of a campaign, in receipt
// order, for scoring (precision and recall against a truth).
func (s *DedupeStore) DedupeDecisions(ctx context.Context, campaign string, fn func(ScoredDecision) error) error {
	rows, err := s.Pool.Query(ctx, `SELECT d.receipt, d.kind, d.reason, coalesce(d.identity_key, ''), coalesce(r.identity_key, ''), d.device_key, coalesce(d.registration_id, 0)
		FROM decisions d LEFT JOIN registrations r ON r.id = d.registration_id
		WHERE d.campaign = $1 ORDER BY d.receipt`, campaign)
	if err != nil {
		return fmt.Errorf("dedupe decisions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d ScoredDecision
		var kind, reason string
		if err := rows.Scan(&d.Receipt, &kind, &reason, &d.IdentityKey, &d.RegisteredIdentity, &d.DeviceKey, &d.RegistrationID); err != nil {
			return fmt.Errorf("dedupe decisions: %w", err)
		}
		d.Kind, d.Reason = prereg.Kind(kind), prereg.Reason(reason)
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("dedupe decisions: %w", err)
	}
	return nil
}
