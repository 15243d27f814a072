package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

var _ dedupe.ReceiptReader = (*DedupeStore)(nil)

// ReceiptView reads what became of one submission for the admin's
// receipt view: the decision, the registration, the appointment and its
// SMS versions, in one snapshot. prereg.ErrNotFound when no decision has
// the receipt.
func (s *DedupeStore) ReceiptView(ctx context.Context, receipt string) (dedupe.ReceiptView, error) {
	var v dedupe.ReceiptView
	err := pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var (
			kind, reason               string
			reg, apptID, runID         *int64
			firstReceipt, matched      *string
			review, reviewedBy         *string
			reviewedAt                 *time.Time
			unassigned                 *string
			clinic, clinicName, status *string
			bandLabel                  *string
			day                        *time.Time
			band                       *int16
		)
		err := tx.QueryRow(ctx, `
			SELECT d.receipt, d.campaign, d.window_id, d.provider, d.kind, d.reason, d.received_at, d.decided_at,
				left(d.device_key, $2), d.registration_id, r.first_receipt, d.matched_receipt,
				d.review, d.reviewed_by, d.reviewed_at, r.unassigned_reason,
				a.id, a.clinic, c.name, a.day, a.band, a.status, a.run_id,
				cp.spec #>> ARRAY['schedule', 'bands', a.band::text],
				EXISTS (SELECT 1 FROM campaign_purges p WHERE p.campaign = d.campaign)
			FROM decisions d
			LEFT JOIN registrations r ON r.id = d.registration_id
			LEFT JOIN appointments a ON a.registration_id = r.id
			LEFT JOIN clinics c ON c.campaign = a.campaign AND c.id = a.clinic
			LEFT JOIN campaigns cp ON cp.id = d.campaign
			WHERE d.receipt = $1`, receipt, DeviceKeyPrefix).Scan(
			&v.Receipt, &v.Campaign, &v.Window, &v.Provider, &kind, &reason, &v.ReceivedAt, &v.DecidedAt,
			&v.Device, &reg, &firstReceipt, &matched,
			&review, &reviewedBy, &reviewedAt, &unassigned,
			&apptID, &clinic, &clinicName, &day, &band, &status, &runID,
			&bandLabel, &v.Purged)
		if errors.Is(err, pgx.ErrNoRows) {
			return prereg.NotFound("no decision has this receipt (unknown, or not decided yet)")
		}
		if err != nil {
			return err
		}
		v.Decision, v.Reason = prereg.Kind(kind), prereg.Reason(reason)
		v.ReceivedAt, v.DecidedAt = v.ReceivedAt.UTC(), v.DecidedAt.UTC()
		v.Registration, v.FirstReceipt, v.MatchedReceipt, v.Unassigned = deref(reg), deref(firstReceipt), deref(matched), deref(unassigned)
		if v.Decision == prereg.KindHeld {
			v.Held = &dedupe.HeldState{Review: deref(review), ReviewedBy: deref(reviewedBy), ReviewedAt: reviewedAt}
		}
		v.SMS = []dedupe.SMSVersion{}
		if apptID == nil {
			return nil
		}
		v.Appointment = &dedupe.ReceiptAppointment{ID: *apptID, Clinic: deref(clinic), ClinicName: deref(clinicName),
			Day: day.Format(time.DateOnly), Band: int(deref(band)), Time: deref(bandLabel), Status: deref(status), RunID: deref(runID)}
		rows, err := tx.Query(ctx, `SELECT version, state, attempts, coalesce(requested_by, ''), sent_at, delivered_at, failed_at
			FROM outbox WHERE appointment_id = $1 ORDER BY version`, *apptID)
		if err != nil {
			return err
		}
		v.SMS, err = pgx.CollectRows(rows, pgx.RowToStructByPos[dedupe.SMSVersion])
		return err
	})
	if err != nil {
		if errors.Is(err, prereg.ErrNotFound) {
			return v, err
		}
		return v, fmt.Errorf("receipt view: %w", err)
	}
	return v, nil
}

// deref is the value p points at, or the zero value.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
