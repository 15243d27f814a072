package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

func TestStreamSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		want    config.Stream
		wantErr string
	}{
		{"unset keeps the defaults", nil, config.Stream{}, ""},
		{"every setting", map[string]string{
			"PREREG_STREAM_REPLICAS":                  "3",
			"PREREG_STREAM_SUBMITTED_MAX_AGE":         "14d",
			"PREREG_STREAM_SUBMITTED_MAX_BYTES":       "32GiB",
			"PREREG_STREAM_DUPLICATE_WINDOW":          "45s",
			"PREREG_STREAM_VERIFIED_DUPLICATE_WINDOW": "5m",
			"PREREG_STREAM_VERIFIED_MAX_AGE":          "60d",
		}, config.Stream{
			Replicas: 3, SubmittedMaxAge: 14 * 24 * time.Hour, SubmittedMaxBytes: 32 << 30,
			DuplicateWindow: 45 * time.Second, VerifiedDuplicateWindow: 5 * time.Minute, VerifiedMaxAge: 60 * 24 * time.Hour,
		}, ""},
		{"plain bytes", map[string]string{"PREREG_STREAM_SUBMITTED_MAX_BYTES": "1000000"}, config.Stream{SubmittedMaxBytes: 1000000}, ""},
		{"replicas out of range", map[string]string{"PREREG_STREAM_REPLICAS": "7"}, config.Stream{}, "PREREG_STREAM_REPLICAS"},
		{"age without unit", map[string]string{"PREREG_STREAM_SUBMITTED_MAX_AGE": "7"}, config.Stream{}, "PREREG_STREAM_SUBMITTED_MAX_AGE"},
		{"negative window", map[string]string{"PREREG_STREAM_DUPLICATE_WINDOW": "-1s"}, config.Stream{}, "PREREG_STREAM_DUPLICATE_WINDOW"},
		{"unknown unit", map[string]string{"PREREG_STREAM_SUBMITTED_MAX_BYTES": "8GB"}, config.Stream{}, "PREREG_STREAM_SUBMITTED_MAX_BYTES"},
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
			require.Equal(t, c.want, cfg.Stream)
		})
	}
}
