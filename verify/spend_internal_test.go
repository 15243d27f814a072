package verify

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSpendGuardPrefixBudget(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(60, -1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 60 {
		ok, _, _ := g.allow(now, "c", "bot")
		require.True(t, ok, "call %d within the burst", i)
	}
	ok, wait, cause := g.allow(now, "c", "bot")
	require.False(t, ok, "the 61st call of the minute waits")
	require.Equal(t, spendPrefix, cause)
	require.InDelta(t, time.Second, wait, float64(10*time.Millisecond), "one call a second refills")
	ok, _, _ = g.allow(now, "c", "home")
	require.True(t, ok, "another prefix has its own budget")
	ok, _, _ = g.allow(now, "c", "")
	require.True(t, ok, "no address: only the campaign's budget")
	ok, _, _ = g.allow(now.Add(time.Second), "c", "bot")
	require.True(t, ok, "a second later, one more")
}

// TestSpendGuardFloodingPrefix: a prefix whose tokens were almost all
// invalid gets a tenth of the budget for the next minute, and its budget
// back once its tokens are valid again; a busy prefix of valid tokens
// keeps the whole budget.
func TestSpendGuardFloodingPrefix(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(60, -1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	spend := func(key string, invalidShare float64) int {
		n := 0
		for i := range 200 {
			ok, _, _ := g.allow(now, "c", key)
			if !ok {
				break
			}
			n++
			g.answered(now, key, float64(i%10) < invalidShare*10)
		}
		return n
	}
	require.Equal(t, 60, spend("bot", 1))
	require.Equal(t, 60, spend("nat", 0.2))
	now = now.Add(spendWindow)
	require.Equal(t, 6, spend("bot", 1), "flooding: a tenth of the budget")
	require.Equal(t, 60, spend("nat", 0.2), "mostly valid tokens: the whole budget")
	now = now.Add(spendWindow)
	require.Equal(t, 6, spend("bot", 0), "still flooding on the last minute's answers")
	now = now.Add(spendWindow)
	require.Equal(t, 60, spend("bot", 0), "valid tokens again: the budget back")
}

func TestSpendGuardCampaignBudget(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(-1, 10)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 10 {
		ok, _, _ := g.allow(now, "c", "addr-"+string(rune('a'+i)))
		require.True(t, ok)
	}
	ok, wait, cause := g.allow(now, "c", "another")
	require.False(t, ok, "the campaign's ceiling holds whatever the addresses")
	require.Equal(t, spendCampaign, cause)
	require.Positive(t, wait)
	ok, _, _ = g.allow(now, "other", "another")
	require.True(t, ok, "another campaign has its own")
}

// TestSpendGuardRefusalTakesNothing: a call the campaign refuses does not
// spend the prefix's budget.
func TestSpendGuardRefusalTakesNothing(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(2, 1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	ok, _, _ := g.allow(now, "c", "p")
	require.True(t, ok)
	ok, _, cause := g.allow(now, "c", "p")
	require.False(t, ok)
	require.Equal(t, spendCampaign, cause)
	ok, _, _ = g.allow(now.Add(time.Second), "c", "p")
	require.True(t, ok, "the prefix's second call was not taken by the refusal")
}

func TestSpendGuardForgetsIdlePrefixes(t *testing.T) {
	t.Parallel()
	g := newSpendGuard(60, -1)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	for i := range 1000 {
		g.allow(now, "c", string(rune(i)))
	}
	require.Len(t, g.prefixes, 1000)
	g.allow(now.Add(2*spendWindow), "c", "new")
	require.Len(t, g.prefixes, 1, "only the prefix seen in the last two minutes is held")
}
