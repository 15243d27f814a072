package postgres_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// The receipt view follows a submission from its decision to its SMS:
// a registration with its appointment and every SMS version, a
// duplicate with the receipt it matched, a held one with its review;
// pseudonymous only, as JSON and as a page under the report's policy.
func TestReceiptView(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pool := db.Pool
	statusCampaign(t, pool)
	reg := statusRegister(t, pool, "r1", "1dentity0key")
	statusExec(t, pool, `UPDATE decisions SET device_key = 'dev0123456789abcdef0123', addr_key = 'addr0key' WHERE receipt = 'r1'`)
	statusDecide(t, pool, "r2", "duplicate", "other_device", &reg, nil)
	statusExec(t, pool, `UPDATE decisions SET matched_receipt = 'r1' WHERE receipt = 'r2'`)
	rejected := "rejected"
	statusDecide(t, pool, "r3", "held", "device_limit", nil, &rejected)
	statusExec(t, pool, `UPDATE decisions SET reviewed_by = 'admin:operator', reviewed_at = now() WHERE receipt = 'r3'`)
	statusAppoint(t, pool, reg, "scheduled", "delivered", "pending")
	statusExec(t, pool, `UPDATE outbox SET last_error = 'bad number 010-0000-0000', requested_by = 'cli:op' WHERE version = 2`)

	store := &postgres.DedupeStore{Pool: pool}
	v, err := store.ReceiptView(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, prereg.KindRegistered, v.Decision)
	require.Equal(t, reg, v.Registration)
	require.Equal(t, "r1", v.FirstReceipt)
	require.Equal(t, "dev0123456789abc", v.Device, "a prefix of the device's keyed hash")
	require.NotNil(t, v.Appointment)
	require.Equal(t, "c1", v.Appointment.Clinic)
	require.Equal(t, "Clinic 1", v.Appointment.ClinicName)
	require.Equal(t, "2021-08-27", v.Appointment.Day)
	require.Equal(t, "13:00-15:00", v.Appointment.Time, "band 1's label from the campaign")
	require.Len(t, v.SMS, 2)
	require.Equal(t, "delivered", v.SMS[0].State)
	require.Equal(t, "pending", v.SMS[1].State)
	require.Equal(t, "cli:op", v.SMS[1].RequestedBy)
	require.Nil(t, v.Held)

	v, err = store.ReceiptView(ctx, "r2")
	require.NoError(t, err)
	require.Equal(t, prereg.KindDuplicate, v.Decision)
	require.Equal(t, prereg.ReasonOtherDevice, v.Reason)
	require.Equal(t, "r1", v.MatchedReceipt)
	require.NotNil(t, v.Appointment, "a duplicate shows its registration's appointment")

	v, err = store.ReceiptView(ctx, "r3")
	require.NoError(t, err)
	require.Equal(t, &dedupe.HeldState{Review: "rejected", ReviewedBy: "admin:operator", ReviewedAt: v.Held.ReviewedAt}, v.Held)
	require.NotNil(t, v.Held.ReviewedAt)
	require.Nil(t, v.Appointment)
	require.Empty(t, v.SMS)

	_, err = store.ReceiptView(ctx, "r-unknown")
	require.ErrorIs(t, err, prereg.ErrNotFound)

	mux := http.NewServeMux()
	mux.Handle("GET /admin/v1/receipts/{receipt}", dedupe.ReceiptHandler(store, slog.New(slog.DiscardHandler)))
	get := func(path, accept string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		mux.ServeHTTP(rec, req)
		return rec
	}
	rec := get("/admin/v1/receipts/r1", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Header().Get("Content-Type"), "application/json")
	var back dedupe.ReceiptView
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &back))
	require.Equal(t, "r1", back.Receipt)
	for _, secret := range []string{"1dentity0key", "addr0key", "1990-08-19", "010-", "dev0123456789abcdef0123", `"\\x00"`, "phone"} {
		require.NotContains(t, rec.Body.String(), secret, "nothing personal, no full keyed hash")
	}

	for _, page := range []*httptest.ResponseRecorder{
		get("/admin/v1/receipts/r1?format=html", ""),
		get("/admin/v1/receipts/r1", "text/html,application/xhtml+xml,*/*;q=0.8"),
	} {
		require.Equal(t, http.StatusOK, page.Code)
		require.Equal(t, "text/html; charset=utf-8", page.Header().Get("Content-Type"))
		require.Equal(t, dedupe.ReportPolicy, page.Header().Get("Content-Security-Policy"), "the report's policy, the report's style")
		body := page.Body.String()
		require.Contains(t, body, "Clinic 1")
		require.Contains(t, body, "13:00-15:00")
		require.NotRegexp(t, `(?i)\sstyle=`, body)
		require.NotContains(t, body, "<script")
		require.NotContains(t, body, "1990-08-19")
	}
	require.Equal(t, http.StatusNotFound, get("/admin/v1/receipts/r-unknown", "").Code)
	require.Equal(t, http.StatusBadRequest, get("/admin/v1/receipts/r1?format=csv", "").Code)
}
