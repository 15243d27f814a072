package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

// reportCancellations adds the cancellations that took effect to the
// dedupe report: per window and decision of the submission they were
// asked with, and the registrations they cancelled.
func (s *DedupeStore) reportCancellations(ctx context.Context, r *dedupe.Report) error {
	rows, err := s.Pool.Query(ctx, `SELECT d.window_id, d.kind, count(*)
		FROM cancellations c JOIN decisions d ON d.receipt = c.receipt
		WHERE c.campaign = $1 AND c.outcome = 'applied' AND ($2 = '' OR d.window_id = $2)
		GROUP BY 1, 2 ORDER BY 1, 2`, r.Campaign, r.Window)
	if err != nil {
		return fmt.Errorf("dedupe report: cancellations: %w", err)
	}
	r.Cancellations, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (dedupe.CancellationRow, error) {
		var c dedupe.CancellationRow
		var kind string
		err := row.Scan(&c.Window, &kind, &c.Cancellations)
		c.Decision = prereg.Kind(kind)
		return c, err
	})
	if err != nil {
		return fmt.Errorf("dedupe report: cancellations: %w", err)
	}
	if r.Cancellations == nil {
		r.Cancellations = []dedupe.CancellationRow{}
	}
	if err := s.Pool.QueryRow(ctx, `SELECT count(DISTINCT c.registration_id)
		FROM cancellations c JOIN registrations g ON g.id = c.registration_id
		WHERE c.campaign = $1 AND ($2 = '' OR g.window_id = $2)`, r.Campaign, r.Window).Scan(&r.RegistrationsCancelled); err != nil {
		return fmt.Errorf("dedupe report: cancelled registrations: %w", err)
	}
	return nil
}
