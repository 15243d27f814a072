package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
)

// A gateway's error code is outside input: it reaches logs and the
// outbox's last_error only bounded, of safe characters, and never with a
// phone number the gateway echoed.
func TestGatewayErrorCodeSanitised(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, code, want string
	}{
		{"a documented code", "invalid_number", "invalid_number"},
		{"a phone echoed", "invalid number 010-1234-5678", "invalid_number_###-####-####"},
		{"a phone without separators", "bad:01012345678", "bad_###########"},
		{"markup and control characters", "<script>\n\x00", "_script___"},
		{"too long", strings.Repeat("x", 500), strings.Repeat("x", 64)},
		{"a few digits are a code", "e4xx_v2", "e4xx_v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": tc.code})
			}))
			t.Cleanup(srv.Close)
			gw, err := notify.NewGateway(notify.GatewayConfig{URL: srv.URL})
			require.NoError(t, err)
			_, err = gw.Send(context.Background(), notify.Outgoing{To: "010-1234-5678", Body: "x", Type: notify.TypeSMS, Key: "k"})
			var se *notify.SendError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tc.want, se.Code)
			require.NotContains(t, err.Error(), "1234")
			require.True(t, se.Permanent)
		})
	}
}

// A message id the gateway answers with is stored and logged: one that is
// not a bounded token of safe characters is a bad answer.
func TestGatewayRefusesUnsafeMessageID(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"message_id":"m1 to 010-1234-5678"}`))
	}))
	t.Cleanup(srv.Close)
	gw, err := notify.NewGateway(notify.GatewayConfig{URL: srv.URL})
	require.NoError(t, err)
	_, err = gw.Send(context.Background(), notify.Outgoing{To: "010-1234-5678", Body: "x", Type: notify.TypeSMS, Key: "k"})
	var se *notify.SendError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "bad_answer", se.Code)
}
