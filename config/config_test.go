package config_test

import (
	"bytes"
	"flag"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table from config.Settings")

const (
	hmacKey = "k1:2LsKHeq51/i6tEJ/SiLyxM0AuupXt1TX97JZL1S9XJQ="
	encKey  = "e1:JxzlTIL831POrExOvKpdXLZL3z1EfRlgsBTcAgP7F4U="
)

func env(vars map[string]string) config.Getenv {
	return func(k string) string { return vars[k] }
}

// The README's table is generated from Settings: a variable added to one
// and not the other fails here.
func TestREADMEConfigurationTable(t *testing.T) {
	path := filepath.Join("..", "README.md")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	readme := string(b)
	section := strings.Index(readme, "## Configuration\n")
	require.GreaterOrEqual(t, section, 0, "README.md has no ## Configuration section")
	start := section + strings.Index(readme[section:], "\n|") + 1
	end := start
	for end < len(readme) && readme[end] == '|' {
		end += strings.Index(readme[end:], "\n") + 1
	}
	want := config.Markdown()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(readme[:start]+want+readme[end:]), 0o644))
		return
	}
	require.Equal(t, want, readme[start:end], "README.md's configuration table differs from config.Settings: run go test ./config -run README -update")
}

func TestSettingsAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range config.Settings() {
		require.False(t, seen[s.Name], "%s listed twice", s.Name)
		seen[s.Name] = true
		require.NotEmpty(t, s.Description, s.Name)
	}
}

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "sms")
	require.NoError(t, os.WriteFile(secretFile, []byte("file-secret-value-of-32-characters\n"), 0o600))

	for _, tc := range []struct {
		name    string
		vars    map[string]string
		require bool
		check   func(t *testing.T, c config.Config)
		wantErr []string // each must appear in the error
	}{
		{name: "every setting typed", require: true, vars: map[string]string{
			"PREREG_HMAC_KEY": hmacKey, "PREREG_ENC_KEY": encKey,
			"PREREG_ADMIN_TOKENS":    "operator:0123456789abcdef,auditor:fedcba9876543210",
			"DATABASE_URL":           "postgres://u:p@db/prereg",
			"NATS_URL":               " nats://n:4222 ",
			"PREREG_LOG_LEVEL":       "debug",
			"PREREG_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.0/16",
			"PREREG_GROUP_COMMIT":    "true",
			"PREREG_DEDUPE_SHARDS":   "0-3,8", "PREREG_DEDUPE_WORKERS": "2", "PREREG_DEDUPE_BATCH": "500",
			"PREREG_SMS_URL": "http://gw", "PREREG_SMS_SECRET_FILE": secretFile,
			"PREREG_SMS_RATE": "inf", "PREREG_SMS_CONCURRENCY": "8",
			"GOGC": "200",
		}, check: func(t *testing.T, c config.Config) {
			require.Len(t, c.HMACKeys, 1)
			require.Len(t, c.EncKeys, 1)
			role, ok := c.AdminTokens.Role("fedcba9876543210")
			require.True(t, ok)
			require.Equal(t, config.RoleAuditor, role)
			require.Equal(t, "nats://n:4222", c.NatsURL)
			require.Len(t, c.TrustedProxies, 2)
			require.True(t, c.GroupCommit)
			require.Equal(t, config.Dedupe{Shards: []int{0, 1, 2, 3, 8}, Workers: 2, BatchSize: 500}, c.Dedupe)
			require.Equal(t, "file-secret-value-of-32-characters", string(c.SMS.Secret), "read from PREREG_SMS_SECRET_FILE, newline trimmed")
			require.True(t, math.IsInf(c.SMS.Rate, 1))
			require.Equal(t, 8, c.SMS.Concurrency)
			require.Equal(t, config.GC{GOGC: "200"}, c.GC)
			require.Empty(t, c.Generated)
		}},
		{name: "keys required outside demo and dev", require: true, vars: map[string]string{},
			wantErr: []string{"PREREG_HMAC_KEY (or PREREG_HMAC_KEY_FILE) is required", "PREREG_ENC_KEY (or PREREG_ENC_KEY_FILE) is required"}},
		{name: "keys made up for demo and dev", vars: map[string]string{}, check: func(t *testing.T, c config.Config) {
			require.Equal(t, []string{"PREREG_HMAC_KEY", "PREREG_ENC_KEY", "PREREG_ADMIN_TOKENS"}, c.Generated)
			require.Len(t, c.HMACKeys, 1)
			require.Len(t, c.AdminTokens.Tokens(), 2)
		}},
		{name: "a secret and its file", vars: map[string]string{"PREREG_SMS_SECRET": "x", "PREREG_SMS_SECRET_FILE": secretFile},
			wantErr: []string{"set PREREG_SMS_SECRET or PREREG_SMS_SECRET_FILE, not both"}},
		{name: "each bad value named", vars: map[string]string{
			"PREREG_SMS_RATE": "fast", "PREREG_SMS_CONCURRENCY": "0", "PREREG_DEDUPE_WORKERS": "-1",
			"PREREG_DEDUPE_BATCH": "x", "PREREG_DEDUPE_SHARDS": "3-1", "PREREG_GROUP_COMMIT": "sometimes",
			"PREREG_TRUSTED_PROXIES": "10.0.0.1", "PREREG_LOG_LEVEL": "loud",
		}, wantErr: []string{"PREREG_SMS_RATE:", "PREREG_SMS_CONCURRENCY:", "PREREG_DEDUPE_WORKERS:", "PREREG_DEDUPE_BATCH:",
			"PREREG_DEDUPE_SHARDS:", "PREREG_GROUP_COMMIT:", "PREREG_TRUSTED_PROXIES:", "PREREG_LOG_LEVEL:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.FromEnv(env(tc.vars), tc.require)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					require.ErrorContains(t, err, w)
				}
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

// A malformed secret is reported by name, never by value.
func TestFromEnvNeverEchoesASecret(t *testing.T) {
	const token = "operator:short-secret"
	const key = "k1:c2VjcmV0LWtleS1ieXRlcw=="
	_, err := config.FromEnv(env(map[string]string{"PREREG_ADMIN_TOKENS": token, "PREREG_HMAC_KEY": key, "PREREG_ENC_KEY": encKey}), true)
	require.ErrorContains(t, err, "PREREG_ADMIN_TOKENS")
	require.ErrorContains(t, err, "PREREG_HMAC_KEY")
	require.NotContains(t, err.Error(), "short-secret")
	require.NotContains(t, err.Error(), "c2VjcmV0LWtleS1ieXRlcw")
}

func TestLogLevel(t *testing.T) {
	require.Equal(t, slog.LevelDebug, config.LogLevel(env(map[string]string{"PREREG_LOG_LEVEL": "debug"})))
	require.Equal(t, slog.LevelInfo, config.LogLevel(env(map[string]string{})))
	require.Equal(t, slog.LevelInfo, config.LogLevel(env(map[string]string{"PREREG_LOG_LEVEL": "loud"})), "FromEnv reports it")
}

func TestLogRedactsSecrets(t *testing.T) {
	c, err := config.FromEnv(env(map[string]string{
		"PREREG_HMAC_KEY": hmacKey, "PREREG_ENC_KEY": encKey, "PREREG_SMS_SECRET": "sms-signing-secret-of-32-characters",
		"DATABASE_URL": "postgres://prereg:db-password@db:5432/prereg", "NATS_URL": "nats://user:nats-password@n:4222",
	}), false)
	require.NoError(t, err)
	var out bytes.Buffer
	c.Log(slog.New(slog.NewTextHandler(&out, nil)))
	log := out.String()
	for _, secret := range []string{hmacKey[3:], encKey[3:], "sms-signing-secret", "db-password", "nats-password"} {
		require.NotContains(t, log, secret)
	}
	require.Equal(t, len(config.Settings()), strings.Count(log, "msg=setting"), "one line per setting")
	require.Contains(t, log, "name=PREREG_SMS_SECRET value=(redacted) source=environment")
	require.Contains(t, log, "name=PREREG_ADMIN_TOKENS value=(redacted) source=generated")
	require.Contains(t, log, "name=PREREG_SMS_RATE value=100 source=default")
	require.Contains(t, log, "postgres://redacted@db:5432/prereg")
}
