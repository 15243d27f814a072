package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
)

func TestConfigureRedelivery(t *testing.T) {
	cfg := config.Config{Verify: config.Verify{AckWait: 8 * time.Second, BackoffCap: 3 * time.Second}, Dedupe: config.Dedupe{AckWait: 5 * time.Second}}
	opts := app.Options{Roles: []app.Role{app.RoleVerify, app.RoleDedupe}}
	opts.Configure(cfg)
	require.Equal(t, 8*time.Second, opts.Verify.AckWait, "verify's consumer takes PREREG_VERIFY_ACK_WAIT")
	require.Equal(t, 3*time.Second, opts.Verify.BackoffCap, "and PREREG_VERIFY_BACKOFF_CAP")
	require.Equal(t, 5*time.Second, opts.Dedupe.AckWait, "dedupe's consumer takes PREREG_DEDUPE_ACK_WAIT")
}
