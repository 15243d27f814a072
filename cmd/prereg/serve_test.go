package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/app"
)

func TestGroupCommitFromEnv(t *testing.T) {
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == "PREREG_GROUP_COMMIT" {
				return v
			}
			return ""
		}
	}
	opts := app.Options{Roles: []app.Role{app.RoleIntake}}
	require.NoError(t, roleOptionsFromEnv(&opts, env("true")))
	require.True(t, opts.Intake.GroupCommit, "intake groups its publishes")
	require.True(t, opts.Stream.AtomicBatches, "and the stream is declared to take them")

	opts = app.Options{Roles: []app.Role{app.RoleVerify}}
	require.NoError(t, roleOptionsFromEnv(&opts, env("")))
	require.False(t, opts.Stream.AtomicBatches, "off unless asked")

	err := roleOptionsFromEnv(&opts, env("sometimes"))
	require.ErrorContains(t, err, "PREREG_GROUP_COMMIT")
}
