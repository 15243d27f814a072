package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

// The admin API lists dead letters for auditors and operators, and an
// operator's re-drive is audited; a submitted-stream entry is refused with
// the reason.
func TestAdminDeadLetters(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	store := &postgres.DeadLetterStore{Pool: e.db.Pool}
	payload := []byte(`{"receipt":"r-dl","campaign":"c-none","verdict":"verified"}`)
	sum := sha256.Sum256(payload)
	require.NoError(t, store.Record(ctx, deadletter.Letter{
		Stream: stream.Submitted, Subject: stream.SubmittedSubject(0), StreamSeq: 1, Reason: deadletter.ReasonNoReceipt,
		PayloadSHA256: sum[:], PayloadLen: len(payload), FirstSeenAt: time.Now(),
	}))
	require.NoError(t, store.Record(ctx, deadletter.Letter{
		Stream: stream.Verified, Subject: stream.VerifiedSubject(0), StreamSeq: 1, MsgID: "r-dl", Reason: deadletter.ReasonNoCampaign,
		Payload: payload, PayloadSHA256: sum[:], PayloadLen: len(payload), FirstSeenAt: time.Now(),
	}))

	code, b := e.do(t, "GET", "/admin/v1/deadletters?stream="+stream.Verified, auditorToken, "")
	require.Equal(t, http.StatusOK, code, string(b))
	var got struct {
		DeadLetters []deadletter.Letter `json:"dead_letters"`
	}
	require.NoError(t, json.Unmarshal(b, &got))
	require.Len(t, got.DeadLetters, 1)
	require.NotContains(t, string(b), "c-none", "no payload in the list")
	verified := got.DeadLetters[0]

	code, b = e.do(t, "GET", "/admin/v1/deadletters", operatorToken, "")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(b, &got))
	require.Len(t, got.DeadLetters, 2)
	submitted := got.DeadLetters[1]

	code, b = e.do(t, "POST", fmt.Sprintf("/admin/v1/deadletters/%d/redrive", submitted.ID), operatorToken, "")
	require.Equal(t, http.StatusConflict, code, string(b))
	require.Contains(t, string(b), "cannot be re-driven")
	code, _ = e.do(t, "POST", fmt.Sprintf("/admin/v1/deadletters/%d/redrive", verified.ID), auditorToken, "")
	require.Equal(t, http.StatusForbidden, code)
	code, b = e.do(t, "POST", fmt.Sprintf("/admin/v1/deadletters/%d/redrive", verified.ID), operatorToken, "")
	require.Equal(t, http.StatusOK, code, string(b))
	l, err := store.Get(ctx, verified.ID)
	require.NoError(t, err)
	require.NotNil(t, l.RedrivenAt)

	code, b = e.do(t, "GET", "/admin/v1/audit?action=deadletter.redrive", auditorToken, "")
	require.Equal(t, http.StatusOK, code)
	var audit struct{ Entries []httpapi.AuditEntry }
	require.NoError(t, json.Unmarshal(b, &audit))
	require.Len(t, audit.Entries, 2, "both operator re-drives, refused or not")
}
