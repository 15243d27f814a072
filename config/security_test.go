package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"user and password", "postgres://prereg:db-password@db:5432/prereg", "postgres://redacted@db:5432/prereg"},
		{"bare token", "nats://s3cr3t-token@n:4222", "nats://redacted@n:4222"},
		{"credential in the query", "postgres://db/prereg?sslmode=require&password=db-password", "postgres://db/prereg?password=redacted&sslmode=require"},
		{"server list", "nats://a:pw-one@n1:4222, nats://tok-two@n2:4222", "nats://redacted@n1:4222,nats://redacted@n2:4222"},
		{"key=value string", "host=db user=prereg password=db-password sslmode=disable", "host=db user=prereg password=redacted sslmode=disable"},
		{"nothing to hide", "nats://n:4222", "nats://n:4222"},
		{"too broken to parse", "nats://user:pw%zz@n:4222", "(redacted)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, config.RedactURL(tc.in))
		})
	}
}

// Outside demo and dev, prereg refuses to start with keys that are not
// its own: a demo id, a placeholder, a short delivery-report secret.
func TestFromEnvProductionRules(t *testing.T) {
	t.Parallel()
	const zeros = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" // 32 zero bytes
	for _, tc := range []struct {
		name       string
		vars       map[string]string
		production bool
		wantErr    []string
	}{
		{name: "dev key id in production", production: true,
			vars:    map[string]string{"PREREG_HMAC_KEY": "dev:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "PREREG_ENC_KEY": encKey},
			wantErr: []string{`PREREG_HMAC_KEY: key "dev" is a demo or dev key id`}},
		{name: "placeholder key in production", production: true,
			vars:    map[string]string{"PREREG_HMAC_KEY": hmacKey, "PREREG_ENC_KEY": zeros},
			wantErr: []string{`PREREG_ENC_KEY: key "k1" repeats a few byte values`}},
		{name: "short delivery-report secret", production: true,
			vars:    map[string]string{"PREREG_HMAC_KEY": hmacKey, "PREREG_ENC_KEY": encKey, "PREREG_SMS_SECRET": "short-secret"},
			wantErr: []string{"PREREG_SMS_SECRET: want at least 32 characters, got 12"}},
		{name: "short delivery-report secret in dev too",
			vars:    map[string]string{"PREREG_SMS_SECRET": "short-secret"},
			wantErr: []string{"PREREG_SMS_SECRET: want at least 32 characters"}},
		{name: "dev keys in dev", vars: map[string]string{"PREREG_HMAC_KEY": "dev:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}},
		{name: "own keys in production", production: true,
			vars: map[string]string{"PREREG_HMAC_KEY": hmacKey, "PREREG_ENC_KEY": encKey, "PREREG_SMS_SECRET": "a-delivery-report-secret-of-32-chars"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.FromEnv(env(tc.vars), tc.production)
			if len(tc.wantErr) == 0 {
				require.NoError(t, err)
				require.Equal(t, tc.production, c.Production)
				return
			}
			require.Error(t, err)
			for _, w := range tc.wantErr {
				require.ErrorContains(t, err, w)
			}
			require.NotContains(t, err.Error(), "short-secret", "an error never repeats a secret")
		})
	}
}

func TestCheckProviderURL(t *testing.T) {
	t.Parallel()
	prod, dev := &config.Config{Production: true}, &config.Config{}
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		url  string
		ok   bool
	}{
		{"https in production", prod, "https://idp.example/v1", true},
		{"http in production", prod, "http://idp.example/v1", false},
		{"http to loopback in production", prod, "http://127.0.0.1:8443", true},
		{"http to localhost in production", prod, "http://localhost:8443", true},
		{"http in dev", dev, "http://127.0.0.1:9000", true},
		{"http to a remote host in dev", dev, "http://idp.example", true},
		{"another scheme", dev, "ftp://idp.example", false},
		{"no host", prod, "https:///v1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.CheckProviderURL(tc.url)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
	require.NotContains(t, prod.CheckProviderURL("http://user:idp-password@idp.example").Error(), "idp-password")
}
