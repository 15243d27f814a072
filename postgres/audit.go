package postgres

import (
	"context"
	"fmt"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/httpapi"
)

// AuditStore is the audit log of admin actions (table admin_audit,
// append-only): the admin API's httpapi.AuditLog, the CLI's Command, and
// the list GET /admin/v1/audit answers with.
type AuditStore struct {
	Pool *pgxpool.Pool
}

var _ httpapi.AuditLog = (*AuditStore)(nil)

// Begin records an action before it runs and returns the entry's id.
func (s *AuditStore) Begin(ctx context.Context, e httpapi.AuditEntry) (int64, error) {
	var id int64
	err := s.Pool.QueryRow(ctx, `
		INSERT INTO admin_audit (at, role, token_id, action, target) VALUES ($1, $2, $3, $4, $5)
		RETURNING id`, e.At, e.Role, e.TokenID, e.Action, e.Target).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return id, nil
}

// Finish records an action's outcome, once.
func (s *AuditStore) Finish(ctx context.Context, id int64, outcome string) error {
	if _, err := s.Pool.Exec(ctx, `UPDATE admin_audit SET outcome = $2 WHERE id = $1 AND outcome IS NULL`, id, outcome); err != nil {
		return fmt.Errorf("audit outcome of %d: %w", id, err)
	}
	return nil
}

// List returns up to limit entries, newest first, older than the entry
// beforeID (0: from the newest); action, when set, keeps only that action.
func (s *AuditStore) List(ctx context.Context, limit int, beforeID int64, action string) ([]httpapi.AuditEntry, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT id, at, role, token_id, action, target, coalesce(outcome, '') FROM admin_audit
		WHERE ($2 = 0 OR id < $2) AND ($3 = '' OR action = $3)
		ORDER BY id DESC LIMIT $1`, limit, beforeID, action)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (httpapi.AuditEntry, error) {
		var e httpapi.AuditEntry
		err := r.Scan(&e.ID, &e.At, &e.Role, &e.TokenID, &e.Action, &e.Target, &e.Outcome)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}

// RoleCLI is the role the audit log gives a command run on a server's
// shell: it holds the database's credentials, not an admin token.
const RoleCLI = "cli"

// Command records an admin CLI command (allocate, campaign load, outbox
// resend…) around run: the entry is written first, so a command that
// cannot be recorded does not run, and its outcome (ok or error) after.
// The token id of a command is the local user who ran it.
func (s *AuditStore) Command(ctx context.Context, action, target string, run func() error) error {
	who := "local"
	if u, err := user.Current(); err == nil && u.Username != "" {
		who = "local:" + u.Username
	}
	id, err := s.Begin(ctx, httpapi.AuditEntry{At: time.Now().UTC(), Role: RoleCLI, TokenID: who[:min(len(who), 64)], Action: action, Target: target})
	if err != nil {
		return err
	}
	runErr := run()
	outcome := "ok"
	if runErr != nil {
		outcome = "error"
	}
	if err := s.Finish(context.WithoutCancel(ctx), id, outcome); err != nil && runErr == nil {
		return err
	}
	return runErr
}
