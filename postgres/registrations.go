package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RegistrationStore answers whether a person is registered: what verify
// asks before it decides a claim it has seen as a duplicate.
type RegistrationStore struct {
	Pool *pgxpool.Pool
}

// Registered reports whether the identity has a registration in the
// campaign (one index look-up on registrations_one_per_person).
func (s *RegistrationStore) Registered(ctx context.Context, campaign, identityKey string) (bool, error) {
	var ok bool
	err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM registrations WHERE campaign = $1 AND identity_key = $2)`, campaign, identityKey).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("registered: %w", err)
	}
	return ok, nil
}
