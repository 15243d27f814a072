package verify_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
)

// TestSpendGuardBoundsProviderCalls: a flood of random tokens from one
// address prefix buys the provider calls of its budget and no more, the
// rest waits undecided (nothing held against it), and citizens of another
// prefix are verified meanwhile.
func TestSpendGuardBoundsProviderCalls(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	set := fastSettings()
	set.ProviderCallsPerPrefix = 5
	w.start(set)

	var bots []prereg.Intent
	for i := range 30 {
		in := w.intent("pass", fmt.Sprintf("random-token-%d", i), "1990-08-19", "010-0000-0000")
		in.AddrKey = "bot-prefix"
		bots = append(bots, in)
	}
	w.submit(bots...)
	citizens := w.surge(3)
	for i := range citizens {
		citizens[i].AddrKey = "home-prefix"
	}
	w.submit(citizens...)

	got := w.outcomes(5+len(citizens), 20*time.Second)
	for _, in := range citizens {
		require.Equal(t, prereg.VerdictVerified, got[in.Receipt].Verdict, "the other prefix's citizens are verified")
	}
	// The budget refills one call every 12 s: nothing more of the bot's
	// is decided for a good while after its five.
	calls := w.provs["pass"].Calls()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(time.Second); time.Now().Before(end); <-tick.C {
		require.Len(t, w.readOutcomes(), 5+len(citizens), "the prefix's calls beyond its budget wait")
	}
	assert.Equal(t, calls, w.provs["pass"].Calls(), "no call beyond the budget")
	decided := 0
	for _, in := range bots {
		if o, ok := got[in.Receipt]; ok {
			decided++
			require.Equal(t, prereg.ReasonInvalidToken, o.Reason, "a decided random token was checked, never given up on")
		}
	}
	require.Equal(t, 5, decided)
	require.Equal(t, len(bots)-5, w.submittedLeft(), "the rest waits in the stream")
}
