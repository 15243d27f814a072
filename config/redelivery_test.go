package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

func TestRedeliverySettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name           string
		env            map[string]string
		verify, dedupe time.Duration
		backoffCap     time.Duration
		wantErr        string
	}{
		{"unset keeps the defaults", nil, 0, 0, 0, ""},
		{"every one", map[string]string{"PREREG_VERIFY_ACK_WAIT": "8s", "PREREG_DEDUPE_ACK_WAIT": "2m", "PREREG_VERIFY_BACKOFF_CAP": "3s"}, 8 * time.Second, 2 * time.Minute, 3 * time.Second, ""},
		{"without unit", map[string]string{"PREREG_VERIFY_ACK_WAIT": "30"}, 0, 0, 0, "PREREG_VERIFY_ACK_WAIT"},
		{"zero", map[string]string{"PREREG_DEDUPE_ACK_WAIT": "0s"}, 0, 0, 0, "PREREG_DEDUPE_ACK_WAIT"},
		{"negative", map[string]string{"PREREG_VERIFY_BACKOFF_CAP": "-1s"}, 0, 0, 0, "PREREG_VERIFY_BACKOFF_CAP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.FromEnv(func(k string) string { return c.env[k] }, false)
			if c.wantErr != "" {
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.verify, cfg.Verify.AckWait)
			require.Equal(t, c.dedupe, cfg.Dedupe.AckWait)
			require.Equal(t, c.backoffCap, cfg.Verify.BackoffCap)
		})
	}
}
