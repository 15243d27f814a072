package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
)

func TestConfigureGroupCommit(t *testing.T) {
	opts := app.Options{Roles: []app.Role{app.RoleIntake}}
	opts.Configure(config.Config{GroupCommit: true})
	require.True(t, opts.Intake.GroupCommit, "intake groups its publishes")
	require.True(t, opts.Stream.AtomicBatches, "and the stream is declared to take them")

	opts = app.Options{Roles: []app.Role{app.RoleVerify}}
	opts.Configure(config.Config{})
	require.False(t, opts.Stream.AtomicBatches, "off unless asked")
}

func TestConfigureOnlyForTheirRoles(t *testing.T) {
	cfg := config.Config{Dedupe: config.Dedupe{Workers: 2, Shards: []int{0, 1}}, SMS: config.SMS{URL: "http://gw", Concurrency: 4}}
	opts := app.Options{Roles: []app.Role{app.RoleDedupe}}
	opts.Configure(cfg)
	require.Equal(t, 2, opts.Dedupe.Workers)
	require.Empty(t, opts.Notify.GatewayURL, "a dedupe process takes no SMS settings")

	opts = app.Options{Roles: []app.Role{app.RoleNotify}}
	opts.Configure(cfg)
	require.Equal(t, "http://gw", opts.Notify.GatewayURL)
	require.Equal(t, 4, opts.Notify.Concurrency)
	require.Zero(t, opts.Dedupe.Workers)
}
