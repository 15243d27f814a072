package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
)

// campaign purge: a dry run and a purge of a loaded campaign succeed and
// are both in the audit log; a retention period not yet over is a
// refusal (exit 1) naming the date it ends, which --early lifts with a
// reason and --yes; an unknown campaign is a refusal too.
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

	// --early lifts the retention rule, with a reason and a confirmation.
	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49", "--early", " ")
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, out, "needs a reason")
	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49", "--early", "rehearsal")
	require.Equal(t, exitUsage, code, "off a terminal nobody can confirm: %s", out)
	require.Contains(t, out, "--yes")
	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49", "--yes")
	require.Equal(t, exitUsage, code, out)
	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "covid-2021-18-49", "--early", "rehearsal", "--yes")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "early purge (rehearsal): cancelled 0 appointments still to come")
	var target string
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT target FROM admin_audit WHERE action = 'campaign.purge' AND outcome = 'ok' ORDER BY id DESC LIMIT 1`).Scan(&target))
	require.Equal(t, `campaign=covid-2021-18-49 dry_run=false early="rehearsal"`, target, "the audit log keeps the reason")

	code, out = runCLI(t, vars, "campaign", "purge", "--campaign", "nope")
	require.Equal(t, exitFailure, code, out)
	code, out = runCLI(t, vars, "campaign", "purge")
	require.Equal(t, exitUsage, code, out)

	code, out = runCLI(t, vars, "report", "receipt", "--receipt", "r-unknown")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "no decision has this receipt")

	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM admin_audit WHERE action = 'campaign.purge'`).Scan(&n))
	require.Equal(t, 5, n, "dry run, purge, refusal, early purge and unknown campaign are recorded; usage errors run nothing")
}
