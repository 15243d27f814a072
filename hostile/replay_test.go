package hostile_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
)

// post sends a body with headers and returns the status and the answer.
func post(t *testing.T, url string, body []byte, h map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Replayed and forged receipts and Idempotency-Keys: a replay gets the
// same receipt, the same key on another body a 4xx, a receipt altered in
// any way a 4xx; a delivery report replayed late, or signed for a message
// nobody sent, a 4xx — never a 5xx.
func TestReplayedAndForged(t *testing.T) {
	st := setup(t)
	base := "http://" + st.targets[0].addr
	key := map[string]string{"Idempotency-Key": "hostile-replay-1", "X-Forwarded-For": "203.0.113.77"}
	status, body := post(t, base+"/v1/intents", st.bases[0], key)
	require.Equal(t, http.StatusAccepted, status, "a valid intent")
	var first struct {
		Receipt string `json:"receipt"`
	}
	require.NoError(t, json.Unmarshal(body, &first))
	require.NotEmpty(t, first.Receipt)

	status, body = post(t, base+"/v1/intents", st.bases[0], key)
	require.Contains(t, []int{http.StatusAccepted, http.StatusTooManyRequests}, status, "a replay is answered as the first was (or limited)")
	if status == http.StatusAccepted {
		require.Contains(t, string(body), first.Receipt, "a replay gets the first receipt")
	}
	other := setField(st.bases[0], "clinic", "another-clinic")
	status, _ = post(t, base+"/v1/intents", other, key)
	require.GreaterOrEqual(t, status, 400, "the same key on another body")
	require.Less(t, status, 500, "the same key on another body")

	r := first.Receipt
	for name, forged := range map[string]string{
		"last character changed":  r[:len(r)-1] + string("AB"[min(1, int(r[len(r)-1]-'A'+1)%2)]),
		"truncated":               r[:len(r)-3],
		"extended":                r + "A",
		"first character changed": other64(r[0]) + r[1:],
	} {
		require.NotEqual(t, r, forged)
		s := get(t, base+"/v1/intents/"+forged)
		require.True(t, s >= 400 && s < 500, "%s receipt: got %d, want a 4xx", name, s)
	}
	require.Less(t, get(t, base+"/v1/intents/"+r), 500, "the real receipt's status")

	reports := "http://" + st.targets[1].addr + "/v1/sms/reports"
	rep := []byte(`{"message_id":"m-forged","idempotency_key":"k-nobody-sent","status":"delivered"}`)
	status, _ = post(t, reports, rep, map[string]string{notify.SignatureHeader: notify.Sign(st.webhook, rep, time.Now())})
	require.Less(t, status, 500, "a signed report for a message nobody sent")
	status, _ = post(t, reports, rep, map[string]string{notify.SignatureHeader: notify.Sign(st.webhook, rep, time.Now().Add(-time.Hour))})
	require.Equal(t, http.StatusUnauthorized, status, "a report replayed an hour late")
	status, _ = post(t, reports, rep, map[string]string{notify.SignatureHeader: notify.Sign([]byte("not the secret"), rep, time.Now())})
	require.Equal(t, http.StatusUnauthorized, status, "a report signed with another secret")
}

// other64 is another base64url character than c.
func other64(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
