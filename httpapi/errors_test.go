package httpapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

func TestErrorCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		code   string
		status int
	}{
		{"not found", prereg.ErrNotFound, httpapi.CodeNotFound, http.StatusNotFound},
		{"campaign not found, wrapped", fmt.Errorf("get campaign: %w", prereg.ErrCampaignNotFound), httpapi.CodeNotFound, http.StatusNotFound},
		{"conflict with a message", prereg.Conflict("appointment cancelled"), httpapi.CodeConflict, http.StatusConflict},
		{"not found with a message, wrapped", fmt.Errorf("allocate: %w", prereg.NotFound("unknown window")), httpapi.CodeNotFound, http.StatusNotFound},
		{"anything else", errors.New("connection refused"), httpapi.CodeInternal, http.StatusInternalServerError},
		{"nil", nil, httpapi.CodeInternal, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := httpapi.ErrorCode(tc.err); got != tc.code {
				t.Errorf("ErrorCode = %q; want %q", got, tc.code)
			}
			if got := httpapi.ErrorStatusCode(tc.err); got != tc.status {
				t.Errorf("ErrorStatusCode = %d; want %d", got, tc.status)
			}
		})
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	code := httpapi.Fail(rec, fmt.Errorf("resend: %w", prereg.Conflict("appointment cancelled")), map[string]any{"detail": "appointment cancelled"})
	if code != httpapi.CodeConflict || rec.Code != http.StatusConflict {
		t.Fatalf("Fail = %q with status %d; want conflict, 409", code, rec.Code)
	}
	if want := `{"detail":"appointment cancelled","error":"conflict"}` + "\n"; rec.Body.String() != want {
		t.Fatalf("body %q; want %q", rec.Body.String(), want)
	}

	rec = httptest.NewRecorder()
	if code := httpapi.Fail(rec, errors.New("password=secret in a driver error"), nil); code != httpapi.CodeInternal {
		t.Fatalf("Fail = %q; want internal", code)
	}
	if want := `{"error":"internal"}` + "\n"; rec.Body.String() != want {
		t.Fatalf("body %q; want %q: the error itself never reaches the answer", rec.Body.String(), want)
	}
}
