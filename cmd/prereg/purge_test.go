package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
)

// campaign purge: a dry run and a purge of a loaded campaign succeed and
// are both in the audit log; a retention period not yet over is a
// refusal (exit 1) naming the date it ends; an unknown campaign too.
func TestCampaignPurge(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	vars := map[string]string{"DATABASE_URL": db.URL}
	code, out := runCLI(t, vars, "campaign", "load", "../../campaigns/covid-2021-18-49.yaml")
	require.Equal(t, exitOK, code, out)

	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49", "--dry-run")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "would change 0 rows")
	require.Contains(t, out, "registrations")

	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "changed 0 rows")

	vars["PREREG_PURGE_RETENTION"] = "36500d"
	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49", "--format", "json")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "within the retention period")

	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "nope")
	require.Equal(t, exitFailure, code, out)
	code, out = runCLI(t, vars, "campaign", "purge")
	require.Equal(t, exitUsage, code, out)

	code, out = runCLI(t, vars, "report", "receipt", "--receipt", "r-unknown")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "no decision has this receipt")

	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM admin_audit WHERE action = 'campaign.purge'`).Scan(&n))
	require.Equal(t, 4, n, "dry run, purge, refusal and unknown campaign are recorded")
}
