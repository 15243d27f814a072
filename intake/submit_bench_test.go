package intake_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// BenchmarkSubmit is one accepted intent through the net/http handler in
// process, publish and acknowledgement included: its allocs/op are the
// submit path's, which must not grow (intake is the hot path). With an
// Idempotency-Key each new key records the body's hash in the
// stream.ReceiptBodies bucket first (idempotency_key_first, what the
// page sends); with the same key every round after the first is a retry,
// which finds the hash recorded there.
func BenchmarkSubmit(b *testing.B) {
	e := setup(b, func(c *intake.Config) {
		c.DeviceRate = -1   // one device sends every round
		c.MaxQueueWait = -1 // a loaded test machine must not shed
	})
	h := e.svc.Handler()
	raw, err := json.Marshal(body(nil))
	require.NoError(b, err)
	for _, idemKey := range []string{"", "first", "bench-key-1"} {
		name := "plain"
		switch idemKey {
		case "first":
			name = "idempotency_key_first"
		case "bench-key-1":
			name = "idempotency_key"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/intents", bytes.NewReader(raw))
				req.Header.Set("Content-Type", "application/json")
				switch idemKey {
				case "":
				case "first":
					n++
					req.Header.Set("Idempotency-Key", "bench-first-"+strconv.Itoa(n))
				default:
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
