package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
)

func TestAllocateCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	vars := map[string]string{"DATABASE_URL": db.URL}
	code, out := runCLI(t, vars, "campaign", "load", "../../campaigns/covid-2021-18-49.yaml")
	require.Equal(t, exitOK, code, out)
	addRegistrations(t, db, 400)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no window", []string{"allocate", "--campaign", "covid-2021-18-49"}, exitUsage, "required"},
		{"bad policy", []string{"allocate", "--campaign", "covid-2021-18-49", "--window", "d9", "--policy", "raffle"}, exitUsage, "policy"},
		{"bad format", []string{"allocate", "--campaign", "covid-2021-18-49", "--window", "d9", "--format", "xml"}, exitUsage, "format"},
		{"no seed yet", []string{"allocate", "--campaign", "covid-2021-18-49", "--window", "d9", "--dry-run"}, exitFailure, "prereg lottery commit"},
		{"unknown window", []string{"allocate", "--campaign", "covid-2021-18-49", "--window", "zz", "--policy", "fcfs"}, exitFailure, "unknown window"},
		{"commit", []string{"lottery", "commit", "--campaign", "covid-2021-18-49", "--window", "d9"}, exitOK, "sha256"},
		{"dry run", []string{"allocate", "--campaign", "covid-2021-18-49", "--window", "d9", "--dry-run"}, exitOK, "DRY RUN"},
	} {
		code, out := runCLI(t, vars, tc.args...)
		require.Equal(t, tc.code, code, "%s: %s", tc.name, out)
		require.Contains(t, out, tc.want, tc.name)
	}

	code, out = runCLI(t, vars, "allocate", "--campaign", "covid-2021-18-49", "--window", "d9", "--format", "json")
	require.Equal(t, exitOK, code, out)
	var res struct {
		Registrations int    `json:"registrations"`
		Assigned      int    `json:"assigned"`
		Seed          string `json:"seed"`
	}
	// runCLI mixes stderr (the log) into out; the JSON is on stdout.
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{\n"):]), &res), out)
	// The example inventory has hundreds of places a band in Gangnam-gu and
	// Haeundae-gu alone: room for all.
	require.Equal(t, 400, res.Registrations)
	require.Equal(t, 400, res.Assigned)
	require.NotEmpty(t, res.Seed)

	code, out = runCLI(t, vars, "lottery", "show", "--campaign", "covid-2021-18-49")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, res.Seed, "the seed is revealed after the run")
}

// addRegistrations inserts n registrations of covid-2021-18-49's window d9
// that nothing has decided yet, in two regions by turns.
func addRegistrations(t *testing.T, db *pgtest.DB, n int) {
	t.Helper()
	for i := range n {
		_, err := db.Pool.Exec(context.Background(), `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region,
			phone_kid, phone_enc, first_receipt, device_key, received_at)
			VALUES ('covid-2021-18-49', $1, 0, 'd9', '1990-08-19', $2, 'k1', '\x00', $3, 'dev', now())`,
			fmt.Sprintf("identity-%d", i), []string{"11680", "26350"}[i%2], fmt.Sprintf("receipt-%d", i))
		require.NoError(t, err)
	}
}
