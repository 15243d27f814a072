package verify_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/verify"
)

// TestRefusalStormCostsNoIntentAnAttempt: the provider answers 401 (or
// 403, 404) to every call, as after a credential rotation or behind a
// misconfigured WAF. The breaker opens, no intent is held to blame, and
// once the provider answers again every intent is verified.
func TestRefusalStormCostsNoIntentAnAttempt(t *testing.T) {
	t.Parallel()
	for _, status := range []int{401, 403, 404} {
		t.Run(statusName(status), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, providerSpec{name: "pass", concurrency: 4})
			pass := w.provs["pass"]
			pass.setFaults(t, sim.Faults{ErrorRate: 1, ErrorStatus: status})
			set := fastSettings()
			set.MaxAttempts = 2
			w.start(set)
			const n = 60
			w.submit(w.surge(n)...)
			require.Eventually(t, func() bool { return w.health("pass").State == "open" }, 10*time.Second, 10*time.Millisecond, "breaker open")
			// Several half-open probes' worth of time: each meets the storm.
			time.Sleep(2 * time.Second)
			require.Empty(t, w.readOutcomes(), "no intent decided (unprocessable) during a refusal storm")
			require.Equal(t, n, w.submittedLeft())

			pass.setFaults(t, sim.Faults{})
			got := w.outcomes(n, 30*time.Second)
			for _, o := range got {
				require.Equal(t, prereg.VerdictVerified, o.Verdict, "receipt %s: %s", o.Receipt, o.Reason)
			}
		})
	}
}

func statusName(status int) string {
	return map[int]string{401: "unauthorized", 403: "forbidden", 404: "not found"}[status]
}

// TestVerifySurvivesDeletedConsumer: the shared consumer is deleted under
// a running verifier; it declares it again by itself and verifies what
// arrives after.
func TestVerifySurvivesDeletedConsumer(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	v, _ := w.start(fastSettings())
	ins := w.surge(20)
	w.submit(ins[:10]...)
	w.outcomes(10, 15*time.Second)
	require.True(t, v.State().Ready(), "running: %s", v.State())

	require.NoError(t, w.js.JS.DeleteConsumer(context.Background(), stream.Submitted, verify.ConsumerName))
	w.submit(ins[10:]...)
	w.outcomes(20, 20*time.Second)
	require.True(t, v.State().Ready(), "running again: %s", v.State())
}
