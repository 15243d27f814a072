package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
)

// The admin commands that change state are in the audit log with the
// local user as their token id, whether they succeeded or not.
func TestAdminCommandsAreAudited(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	vars := map[string]string{"DATABASE_URL": db.URL}
	for _, args := range [][]string{
		{"campaign", "load", "../../campaigns/covid-2021-18-49.yaml"},
		{"lottery", "commit", "--campaign", "covid-2021-18-49", "--window", "d9"},
		{"allocate", "--campaign", "covid-2021-18-49", "--window", "d9", "--dry-run"},
	} {
		code, out := runCLI(t, vars, args...)
		require.Equal(t, exitOK, code, out)
	}
	code, out := runCLI(t, vars, "outbox", "resend", "--appointment", "987654")
	require.Equal(t, exitFailure, code, out)

	rows, err := db.Pool.Query(context.Background(), `SELECT role, token_id, action, target, coalesce(outcome, '') FROM admin_audit ORDER BY id`)
	require.NoError(t, err)
	type entry struct{ Role, TokenID, Action, Target, Outcome string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entry])
	require.NoError(t, err)
	require.Len(t, got, 4)
	want := []struct{ action, target, outcome string }{
		{"campaign.load", "campaign=covid-2021-18-49", "ok"},
		{"lottery.commit", "campaign=covid-2021-18-49 window=d9", "ok"},
		{"allocation.start", "campaign=covid-2021-18-49 window=d9 dry_run=true policy=lottery", "ok"},
		{"outbox.resend", "appointment=987654", "error"},
	}
	for i, w := range want {
		require.Equal(t, "cli", got[i].Role)
		require.Regexp(t, `^local`, got[i].TokenID)
		require.Equal(t, w.action, got[i].Action)
		require.Equal(t, w.target, got[i].Target)
		require.Equal(t, w.outcome, got[i].Outcome)
	}
}
