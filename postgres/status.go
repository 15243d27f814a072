package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
)

// StatusStore answers the citizen's status lookup from decisions,
// registrations, appointments and the outbox; it implements
// intake.StatusReader. It only reads, so in production its pool may point
// at a read replica.
type StatusStore struct {
	Pool *pgxpool.Pool

	mu         sync.Mutex
	checked    bool
	unassigned bool // registrations.unassigned_reason exists (migration 0004)
}

// hasUnassigned reports whether the schema has the scheduler's
// registrations.unassigned_reason, asking once.
func (s *StatusStore) hasUnassigned(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checked {
		return s.unassigned, nil
	}
	err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'registrations' AND column_name = 'unassigned_reason')`).Scan(&s.unassigned)
	if err != nil {
		return false, fmt.Errorf("status: read schema: %w", err)
	}
	s.checked = true
	return s.unassigned, nil
}

// statusSQL joins one decision with what became of it. Outbox versions are
// folded: an appointment is "delivered" once any version's delivery report
// came back, "notified" once any version was accepted by the gateway. A
// submission is cancelled when a cancellation was asked for it with its
// claimed birth date, or when the person's registration is cancelled (from
// any of their receipts: a duplicate shows its registration's
// cancellation, and only ever its own person's).
const statusSQL = `
SELECT d.window_id, d.campaign, d.kind, d.reason, d.birthdate, d.review,
       %s,
       a.clinic, a.day, a.band, a.status,
       coalesce(o.delivered, false), coalesce(o.sent, false),
       EXISTS (SELECT 1 FROM cancellations c WHERE c.receipt = d.receipt AND c.birthdate = d.birthdate)
         OR EXISTS (SELECT 1 FROM cancellations c WHERE c.registration_id = d.registration_id)
FROM decisions d
LEFT JOIN registrations r ON r.id = d.registration_id
LEFT JOIN appointments a ON a.registration_id = r.id
LEFT JOIN LATERAL (
    SELECT bool_or(state = 'delivered') AS delivered, bool_or(state IN ('sent', 'delivered')) AS sent
    FROM outbox WHERE appointment_id = a.id
) o ON true
WHERE d.receipt = $1`

// Status looks up a receipt; prereg.ErrNotFound while it is undecided.
func (s *StatusStore) Status(ctx context.Context, receipt string) (d intake.Decided, err error) {
	has, err := s.hasUnassigned(ctx)
	if err != nil {
		return intake.Decided{}, err
	}
	unassigned := "NULL::text"
	if has {
		unassigned = "r.unassigned_reason"
	}
	var (
		kind, reason         string
		birth                *time.Time
		review, unassignedBy *string
		clinic, apptStatus   *string
		day                  *time.Time
		band                 *int16
		delivered, sent      bool
		cancelled            bool
	)
	err = s.Pool.QueryRow(ctx, fmt.Sprintf(statusSQL, unassigned), receipt).Scan(&d.Window,
		&d.Campaign, &kind, &reason, &birth, &review, &unassignedBy,
		&clinic, &day, &band, &apptStatus, &delivered, &sent, &cancelled)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.undecided(ctx, receipt)
	}
	if err != nil {
		return intake.Decided{}, fmt.Errorf("status: %w", err)
	}
	if birth != nil {
		d.Birthdate = *birth
	}
	if cancelled {
		defer func() {
			d.Status, d.Reason = prereg.StatusCancelled, prereg.ReasonNone
		}()
	}
	d.Reason = prereg.Reason(reason)
	switch prereg.Kind(kind) {
	case prereg.KindRejected:
		d.Status = prereg.StatusRejected
		return d, nil
	case prereg.KindDuplicate:
		d.Status = prereg.StatusDuplicate
		return d, nil
	case prereg.KindHeld:
		switch {
		case review == nil:
			d.Status = prereg.StatusHeld
			return d, nil
		case *review == "rejected":
			d.Status, d.Reason = prereg.StatusRejected, prereg.ReasonOperatorRejected
			return d, nil
		}
		// Released: the person is registered (by this or an earlier
		// submission); what follows is the registration's.
		d.Reason = prereg.ReasonNone
	}
	switch {
	case clinic != nil && day != nil && band != nil:
		d.Slot = &intake.Slot{Clinic: *clinic, Day: *day, Band: int(*band)}
		switch {
		case apptStatus != nil && *apptStatus == "cancelled":
			d.Status = prereg.StatusCancelled
		case delivered:
			d.Status = prereg.StatusDelivered
		case sent:
			d.Status = prereg.StatusNotified
		default:
			d.Status = prereg.StatusScheduled
		}
	case unassignedBy != nil:
		d.Status = prereg.StatusUnassigned
	default:
		d.Status = prereg.StatusRegistered
	}
	return d, nil
}

// undecided answers for a receipt without a decision: cancelled when a
// cancellation was asked for it with one birth date (the lookup then
// checks that date like a decision's), else prereg.ErrNotFound.
func (s *StatusStore) undecided(ctx context.Context, receipt string) (intake.Decided, error) {
	rows, err := s.Pool.Query(ctx, `SELECT DISTINCT birthdate FROM cancellations WHERE receipt = $1 LIMIT 2`, receipt)
	if err != nil {
		return intake.Decided{}, fmt.Errorf("status: cancellations: %w", err)
	}
	dates, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return intake.Decided{}, fmt.Errorf("status: cancellations: %w", err)
	}
	if len(dates) != 1 {
		return intake.Decided{}, prereg.ErrNotFound
	}
	return intake.Decided{Status: prereg.StatusCancelled, Birthdate: dates[0]}, nil
}
