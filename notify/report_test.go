package notify_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/sim"
)

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	secret := []byte("webhook-secret-for-tests")
	body := []byte(`{"message_id":"m1","idempotency_key":"c:1:v1","status":"delivered"}`)
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		header string
		body   []byte
		want   error
	}{
		{"the simulated gateway's signature", sim.SignReport(secret, body, now), body, nil},
		{"notify's own signature", notify.Sign(secret, body, now.Add(-time.Minute)), body, nil},
		{"another secret", sim.SignReport([]byte("other"), body, now), body, notify.ErrBadSignature},
		{"an altered body", sim.SignReport(secret, body, now), append([]byte(" "), body...), notify.ErrBadSignature},
		{"too old", sim.SignReport(secret, body, now.Add(-10*time.Minute)), body, notify.ErrStaleSignature},
		{"from the future", sim.SignReport(secret, body, now.Add(10*time.Minute)), body, notify.ErrStaleSignature},
		{"missing", "", body, notify.ErrBadSignature},
		{"no mac", "t=1700000000", body, notify.ErrBadSignature},
		{"short mac", "t=1700000000,v1=abcd", body, notify.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := notify.Verify(secret, tc.body, tc.header, now)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func FuzzParseSignature(f *testing.F) {
	f.Add("t=1700000000,v1=" + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	f.Add("t=,v1=")
	f.Add(",,,=")
	f.Fuzz(func(t *testing.T, h string) {
		ts, sig, err := notify.ParseSignature(h)
		if err == nil && (len(sig) != 32 || ts.Unix() <= 0) {
			t.Fatalf("accepted %q with a %d-byte mac at %v", h, len(sig), ts)
		}
	})
}
