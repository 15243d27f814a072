package intake_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// BenchmarkSubmit is one accepted intent through the net/http handler in
// process, publish and acknowledgement included: its allocs/op are the
// submit path's, which must not grow (intake is the hot path). With an
// Idempotency-Key every round after the first is a retry, which also
// reads the first submission back from the stream.
func BenchmarkSubmit(b *testing.B) {
	e := setup(b, func(c *intake.Config) {
		c.DeviceRate = -1   // one device sends every round
		c.MaxQueueWait = -1 // a loaded test machine must not shed
	})
	h := e.svc.Handler()
	raw, err := json.Marshal(body(nil))
	require.NoError(b, err)
	for _, idemKey := range []string{"", "bench-key-1"} {
		name := "plain"
		if idemKey != "" {
			name = "idempotency_key"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/intents", bytes.NewReader(raw))
				req.Header.Set("Content-Type", "application/json")
				if idemKey != "" {
					req.Header.Set("Idempotency-Key", idemKey)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("status %d, want 202: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
