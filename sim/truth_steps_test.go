package sim

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScoreAnswersOwnership: each receipt needing a decision belongs to
// one submission; a retry owns one only when it did not get its
// original's.
func TestScoreAnswersOwnership(t *testing.T) {
	t.Parallel()
	accepted := Want{Status: http.StatusAccepted, Window: "open"}
	subs := []Submission{
		{Seq: 0, Class: ClassFirst, Person: 0, Want: accepted, RetryOf: -1},
		{Seq: 1, Class: ClassRetry, Person: 0, Want: accepted, RetryOf: 0},
		{Seq: 2, Class: ClassFirst, Person: 1, Want: accepted, RetryOf: -1},
		{Seq: 3, Class: ClassRetry, Person: 1, Want: accepted, RetryOf: 2},
		{Seq: 4, Class: ClassFirst, Person: 2, Want: accepted, RetryOf: -1},
		{Seq: 5, Class: ClassFirst, Person: 3, Want: accepted, RetryOf: -1},
	}
	answer := []Answer{
		{Seq: 0, Status: 202, Receipt: "rA"},
		{Seq: 1, Status: 202, Receipt: "rA"}, // the retry repeats its original's receipt
		{Seq: 2},                             // never answered: the retry's receipt is its own
		{Seq: 3, Status: 202, Receipt: "rC"},
		{Seq: 4, Status: 202, Receipt: "rA"}, // another submission's receipt
		{Seq: 5, Status: 202},                // no receipt
	}
	sc := Score{Status: map[int]int{}}
	owner := sc.scoreAnswers(subs, answer, nil)
	require.Equal(t, map[string]int{"rA": 0, "rC": 3}, owner)
	require.Equal(t, 2, sc.Accepted)
	require.Equal(t, map[int]int{0: 1, 202: 5}, sc.Status)
	var problems []int
	for _, m := range sc.Mismatches {
		problems = append(problems, m.Seq)
	}
	require.Equal(t, []int{2, 4, 5}, problems, "want the unanswered, the stolen receipt and the missing one: %v", sc.Mismatches)
}

// TestScoreMismatchesBounded: past MaxMismatches a mismatch is counted,
// not kept.
func TestScoreMismatchesBounded(t *testing.T) {
	t.Parallel()
	var sc Score
	for i := range MaxMismatches + 5 {
		sc.mismatch(i, ClassFirst, "problem %d", i)
	}
	require.Equal(t, MaxMismatches+5, sc.MismatchCount)
	require.Len(t, sc.Mismatches, MaxMismatches)
	require.Equal(t, "problem 0", sc.Mismatches[0].Problem)
}
