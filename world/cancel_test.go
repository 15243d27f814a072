package world_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

// jsonDo sends a JSON body and decodes the JSON answer.
func jsonDo(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// A citizen cancels right after the 202, while the intent is still on its
// way through verify and dedupe: the whole system honours it. The lookup
// says cancelled, the person is never drawn, and the handset gets exactly
// one SMS, the cancellation, however often it is asked for.
func TestCancelRightAfterSubmitEndToEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := startWorld(t, ctx, nil, world.Options{Clinics: 20, Seed: 9})
	defer w.Close()

	const birth = "1990-08-13" // digit 3: open in the demo campaign
	phone, ok := intake.NormalizePhone("010-2345-6789")
	require.True(t, ok)
	token := w.IdPs["pass"].Issue(sim.TokenClaims{Person: "cancelling-citizen", Birthdate: birth, Phone: "+821023456789", Device: "dev-cancel", Nonce: 1})
	status, a := jsonDo(t, http.MethodPost, w.BaseURL+"/v1/intents", map[string]string{
		"campaign": w.Campaign.ID, "provider": "pass", "identity_token": token, "birthdate": birth,
		"phone": "010-2345-6789", "region": "11680", "device_id": "dev-cancel",
	})
	require.Equal(t, http.StatusAccepted, status, "%v", a)
	receipt := a["receipt"].(string)
	path := w.BaseURL + "/v1/intents/" + receipt

	for range 2 {
		status, got := jsonDo(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": birth})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "cancelled", got["status"])
	}
	status, got := jsonDo(t, http.MethodGet, path+"?birthdate=1990-08-23", nil)
	require.Equal(t, http.StatusNotFound, status, "a wrong birth date learns nothing: %v", got)

	// dedupe decides it and honours the cancellation.
	require.Eventually(t, func() bool {
		var outcome *string
		err := w.Pool.QueryRow(ctx, `SELECT outcome FROM cancellations WHERE receipt = $1`, receipt).Scan(&outcome)
		return err == nil && outcome != nil && *outcome == "applied"
	}, time.Minute, 100*time.Millisecond, "the cancellation is applied once the intent is decided")
	status, got = jsonDo(t, http.MethodGet, path+"?birthdate="+birth, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "cancelled", got["status"])

	// The cancellation SMS arrives, once; no appointment is ever made.
	require.Eventually(t, func() bool { return w.Gateway.Handsets().Received(phone) >= 1 }, time.Minute, 100*time.Millisecond,
		"the cancellation SMS reaches the handset")
	status, _ = jsonDo(t, http.MethodPost, path+"/cancel", map[string]string{"birthdate": birth})
	require.Equal(t, http.StatusOK, status)
	st := &postgres.AllocationStore{Pool: w.Pool}
	window := ""
	for _, win := range w.Campaign.Windows {
		if win.Admits(time.Date(1990, 8, 13, 0, 0, 0, 0, time.UTC)) {
			window = win.ID
		}
	}
	run, err := st.CreateRun(ctx, scheduler.RunRecord{Campaign: w.Campaign.ID, Window: window, Policy: scheduler.PolicyFCFS, DryRun: true, StartedAt: time.Now()})
	require.NoError(t, err)
	snap, err := st.Snapshot(ctx, run)
	require.NoError(t, err)
	require.Empty(t, snap.Registrations, "the cancelled person is not drawn")
	time.Sleep(time.Second) // room for a second message, were there one
	require.Equal(t, 1, w.Gateway.Handsets().Received(phone), "exactly one SMS: the cancellation")
	require.Contains(t, w.Gateway.Handsets().Last(phone), "취소")
}
