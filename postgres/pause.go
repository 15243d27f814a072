package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
)

// PauseStore keeps the operators' pauses of campaigns' intake (table
// intake_pauses): written by the admin API, read by every intake replica
// with its campaigns.
type PauseStore struct {
	Pool *pgxpool.Pool
}

var _ intake.PauseStore = (*PauseStore)(nil)

// Pauses returns the pauses recorded, by campaign. A pause whose
// reopening time has passed is still listed: intake compares it with its
// own clock, so that it ends on time between two refreshes.
func (s *PauseStore) Pauses(ctx context.Context) (map[string]intake.Pause, error) {
	rows, err := s.Pool.Query(ctx, `SELECT campaign, paused_at, reopens_at, paused_by FROM intake_pauses`)
	if err != nil {
		return nil, fmt.Errorf("list pauses: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (intake.Pause, error) {
		var p intake.Pause
		err := r.Scan(&p.Campaign, &p.PausedAt, &p.ReopensAt, &p.By)
		p.PausedAt = p.PausedAt.UTC()
		if p.ReopensAt != nil {
			at := p.ReopensAt.UTC()
			p.ReopensAt = &at
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list pauses: %w", err)
	}
	out := make(map[string]intake.Pause, len(ps))
	for _, p := range ps {
		out[p.Campaign] = p
	}
	return out, nil
}

// Pause records a campaign's pause, replacing one in force.
func (s *PauseStore) Pause(ctx context.Context, p intake.Pause) error {
	tag, err := s.Pool.Exec(ctx, `
		INSERT INTO intake_pauses (campaign, paused_at, reopens_at, paused_by)
		SELECT id, $2, $3, $4 FROM campaigns WHERE id = $1
		ON CONFLICT (campaign) DO UPDATE SET paused_at = excluded.paused_at, reopens_at = excluded.reopens_at, paused_by = excluded.paused_by`,
		p.Campaign, p.PausedAt, p.ReopensAt, p.By)
	if err != nil {
		return fmt.Errorf("pause %q: %w", p.Campaign, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pause %q: %w", p.Campaign, prereg.ErrCampaignNotFound)
	}
	return nil
}

// Resume ends a campaign's pause; false when none was recorded.
func (s *PauseStore) Resume(ctx context.Context, campaign string) (bool, error) {
	tag, err := s.Pool.Exec(ctx, `DELETE FROM intake_pauses WHERE campaign = $1`, campaign)
	if err != nil {
		return false, fmt.Errorf("resume %q: %w", campaign, err)
	}
	return tag.RowsAffected() > 0, nil
}
