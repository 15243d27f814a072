package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

func TestLimitSettings(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) config.Getenv { return func(k string) string { return vars[k] } }
	c, err := config.FromEnv(env(map[string]string{
		"PREREG_IPV6_PREFIX": "56", "PREREG_VERIFY_PREFIX_CALLS": "30", "PREREG_VERIFY_CAMPAIGN_CALLS": "250.5",
	}), false)
	require.NoError(t, err)
	require.Equal(t, 56, c.IPv6Prefix)
	require.Equal(t, config.Verify{CallsPerPrefix: 30, CallsPerCampaign: 250.5}, c.Verify)

	c, err = config.FromEnv(env(nil), false)
	require.NoError(t, err)
	require.Zero(t, c.IPv6Prefix, "unset: intake's default")
	require.Zero(t, c.Verify, "unset: verify's defaults")

	for name, v := range map[string]string{
		"PREREG_IPV6_PREFIX": "16", "PREREG_VERIFY_PREFIX_CALLS": "0", "PREREG_VERIFY_CAMPAIGN_CALLS": "inf",
	} {
		_, err := config.FromEnv(env(map[string]string{name: v}), false)
		require.ErrorContains(t, err, name)
	}
}
