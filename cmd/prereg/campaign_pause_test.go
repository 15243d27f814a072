package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// campaign pause records the pause intake reads, with its reopening
// time; resume removes it; both are audited; a bad --until is a usage
// error.
func TestCampaignPauseResume(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	vars := map[string]string{"DATABASE_URL": db.URL}
	code, out := runCLI(t, vars, "campaign", "load", "../../campaigns/covid-2021-18-49.yaml")
	require.Equal(t, exitOK, code, out)
	code, out = runCLI(t, vars, "campaign", "pause", "--campaign", "covid-2021-18-49", "--until", "2001-01-01T00:00:00Z")
	require.Equal(t, exitUsage, code, out)
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	code, out = runCLI(t, vars, "campaign", "pause", "--campaign", "covid-2021-18-49", "--until", until.Format(time.RFC3339))
	require.Equal(t, exitOK, code, out)
	ctx := context.Background()
	store := &postgres.PauseStore{Pool: db.Pool}
	ps, err := store.Pauses(ctx)
	require.NoError(t, err)
	require.Equal(t, until, ps["covid-2021-18-49"].ReopensAt.UTC())
	code, out = runCLI(t, vars, "campaign", "resume", "--campaign", "covid-2021-18-49")
	require.Equal(t, exitOK, code, out)
	ps, err = store.Pauses(ctx)
	require.NoError(t, err)
	require.Empty(t, ps)
	var actions []string
	rows, err := db.Pool.Query(ctx, `SELECT action || ' ' || outcome FROM admin_audit WHERE action LIKE 'intake.%' ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		actions = append(actions, a)
	}
	require.Equal(t, []string{"intake.pause ok", "intake.resume ok"}, actions)
}
