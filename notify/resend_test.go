package notify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/notify"
)

// resender refuses every resend with err, wrapped the way
// postgres.OutboxStore wraps it.
type resender struct{ err error }

func (r resender) Resend(_ context.Context, req notify.ResendRequest) (notify.Resent, error) {
	return notify.Resent{}, fmt.Errorf("resend appointment %d: %w", req.Appointment, r.err)
}

func TestResendHandlerAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		status int
		body   string
	}{
		{"cancelled", notify.ConflictError("appointment cancelled"), http.StatusConflict,
			`{"detail":"resend appointment 7: appointment cancelled","error":"conflict"}`},
		{"still waiting", notify.ConflictError("version 1 is still waiting to be sent"), http.StatusConflict,
			`{"detail":"resend appointment 7: version 1 is still waiting to be sent","error":"conflict"}`},
		{"unknown appointment", prereg.ErrNotFound, http.StatusNotFound, `{"error":"not_found"}`},
		{"store down", errors.New("connection refused"), http.StatusInternalServerError, `{"error":"internal"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := notify.ResendHandler(resender{tc.err}, func(*http.Request) string { return "op" }, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/admin/v1/outbox/resend", strings.NewReader(`{"appointment":7}`)))
			require.Equal(t, tc.status, rec.Code)
			require.Equal(t, tc.body+"\n", rec.Body.String())
		})
	}
}
