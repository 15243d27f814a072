package config_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

// serve refuses keys that are not secrets; demo and dev take any
// well-formed key. Errors name the variable and the key id, never the
// secret.
func TestServeRefusesMadeUpKeys(t *testing.T) {
	t.Parallel()
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	text := b64([]byte("0123456789abcdef0123456789abcdef"))
	repeated := b64(bytes.Repeat([]byte{7, 200}, 16))
	for _, tc := range []struct {
		name       string
		hmac, enc  string
		wantErr    []string // empty: accepted by serve
		devAccepts bool
	}{
		{name: "random keys, rotation in progress", hmac: "k2:" + hmacKey[3:] + ",k1:" + encKey[3:], enc: "e2:" + encKey[3:] + ",e1:" + hmacKey[3:],
			// the same secret as both an HMAC and an encryption key
			wantErr: []string{`PREREG_HMAC_KEY key "k2" and PREREG_ENC_KEY key "e1" are the same secret`}, devAccepts: true},
		{name: "random keys", hmac: hmacKey, enc: encKey, devAccepts: true},
		{name: "a dev key", hmac: "dev:" + hmacKey[3:], enc: encKey, wantErr: []string{`PREREG_HMAC_KEY: key "dev" is a demo or dev key id`}, devAccepts: true},
		{name: "a demo key", hmac: hmacKey, enc: "demo:" + encKey[3:], wantErr: []string{`PREREG_ENC_KEY: key "demo" is a demo or dev key id`}, devAccepts: true},
		{name: "text", hmac: "k1:" + text, enc: encKey, wantErr: []string{`PREREG_HMAC_KEY: key "k1" is text`}, devAccepts: true},
		{name: "a repeated pattern", hmac: hmacKey, enc: "e1:" + repeated, wantErr: []string{`PREREG_ENC_KEY: key "e1" repeats a few byte values`}, devAccepts: true},
		{name: "a short HMAC key", hmac: "k1:" + b64(make([]byte, 16)), enc: encKey, wantErr: []string{"PREREG_HMAC_KEY", "want at least 32 bytes, got 16"}},
		{name: "a long encryption key", hmac: hmacKey, enc: "e1:" + b64(append(bytes.Repeat([]byte{1}, 32), 2)), wantErr: []string{"PREREG_ENC_KEY", "want exactly 32 bytes"}},
		{name: "an id twice", hmac: hmacKey + "," + hmacKey, enc: encKey, wantErr: []string{"PREREG_HMAC_KEY", `key id "k1" given twice`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vars := env(map[string]string{"PREREG_HMAC_KEY": tc.hmac, "PREREG_ENC_KEY": tc.enc})
			_, err := config.FromEnv(vars, true)
			if len(tc.wantErr) == 0 {
				require.NoError(t, err)
			} else {
				require.Error(t, err, "serve must refuse it")
				for _, w := range tc.wantErr {
					require.ErrorContains(t, err, w)
				}
				for _, secret := range []string{hmacKey[3:], encKey[3:], text, repeated} {
					require.NotContains(t, err.Error(), secret, "an error never repeats a secret")
				}
			}
			_, err = config.FromEnv(vars, false)
			if tc.devAccepts {
				require.NoError(t, err, "demo and dev take it")
			} else {
				require.Error(t, err, "malformed for every command")
			}
		})
	}
}
