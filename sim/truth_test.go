package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
)

// handTruth is a surge small enough to reason about by hand: two people to
// register (0 and 1), a retry, a window jump, a malformed request and an
// out-of-window one.
func handTruth() Truth {
	accepted := Want{Status: http.StatusAccepted, Window: "open"}
	return Truth{DeviceCap: 4, Submissions: []Submission{
		{Seq: 0, Class: ClassFirst, Person: 0, Want: accepted, RetryOf: -1},
		{Seq: 1, Class: ClassRepeat, Person: 0, Want: accepted, RetryOf: -1},
		{Seq: 2, Class: ClassFirst, Person: 1, Want: accepted, RetryOf: -1},
		{Seq: 3, Class: ClassRetry, Person: 0, Want: accepted, RetryOf: 0},
		{Seq: 4, Class: ClassWindowJump, Person: 2, RetryOf: -1,
			Want: Want{Status: http.StatusAccepted, Window: "open", Kind: prereg.KindRejected, Reason: prereg.ReasonBirthdateMismatch}},
		{Seq: 5, Class: ClassMalformed, Person: 0, Want: Want{Status: http.StatusBadRequest}, RetryOf: -1},
		{Seq: 6, Class: ClassOutOfWindow, Person: 3, Want: Want{Status: http.StatusForbidden, Window: "next"}, RetryOf: -1},
	}}
}

func handAnswers() []Answer {
	return []Answer{
		{0, 202, "r0"}, {1, 202, "r1"}, {2, 202, "r2"}, {3, 202, "r0"}, {4, 202, "r4"}, {5, 400, ""}, {6, 403, ""},
	}
}

func handDecisions() []Decision {
	return []Decision{
		{Receipt: "r0", Kind: prereg.KindRegistered, IdentityKey: "k0", RegistrationID: 1},
		{Receipt: "r1", Kind: prereg.KindDuplicate, Reason: prereg.ReasonSameDevice, IdentityKey: "k0", RegistrationID: 1},
		{Receipt: "r2", Kind: prereg.KindRegistered, IdentityKey: "k1", RegistrationID: 2},
		{Receipt: "r4", Kind: prereg.KindRejected, Reason: prereg.ReasonBirthdateMismatch, IdentityKey: "k2"},
	}
}

func TestTruthExpected(t *testing.T) {
	t.Parallel()
	e := handTruth().Expected()
	require.Equal(t, Expected{
		Submitted: 7, Status: map[int]int{202: 5, 400: 1, 403: 1},
		Accepted: 4, Persons: 2, Registered: 2, Duplicate: 1, DuplicateOrHeld: 1,
		Rejected: 1, RejectedBy: map[prereg.Reason]int{prereg.ReasonBirthdateMismatch: 1},
	}, e)
}

func TestTruthScore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		answers   func([]Answer) []Answer
		decisions func([]Decision) []Decision
		ok        bool
		counts    bool
		precision float64
		recall    float64
		problems  int
	}{
		{name: "perfect", ok: true, counts: true, precision: 1, recall: 1},
		{
			name:      "a missed person",
			decisions: func(d []Decision) []Decision { return append(d[:2:2], d[3]) },
			precision: 1, recall: 0.5, problems: 1, // accepted but never decided
		},
		{
			name: "a double registration",
			decisions: func(d []Decision) []Decision {
				d[1] = Decision{Receipt: "r1", Kind: prereg.KindRegistered, IdentityKey: "k0", RegistrationID: 3}
				return d
			},
			precision: 2.0 / 3, recall: 1, problems: 1,
		},
		{
			name: "a duplicate of another person's registration",
			decisions: func(d []Decision) []Decision {
				d[1].RegistrationID = 2
				return d
			},
			counts: true, precision: 1, recall: 1, problems: 1,
		},
		{
			name: "one person, two identity keys",
			decisions: func(d []Decision) []Decision {
				d[1].IdentityKey = "k9"
				return d
			},
			counts: true, precision: 1, recall: 1, problems: 1,
		},
		{
			name: "a window jump registered",
			decisions: func(d []Decision) []Decision {
				d[3] = Decision{Receipt: "r4", Kind: prereg.KindRegistered, IdentityKey: "k2", RegistrationID: 4}
				return d
			},
			precision: 2.0 / 3, recall: 1, problems: 2, // wrong kind; someone registered who should not be
		},
		{
			name: "a retry with a new receipt",
			answers: func(a []Answer) []Answer {
				a[3].Receipt = "r3"
				return a
			},
			precision: 1, recall: 1, problems: 2, // and its new receipt is never decided
		},
		{
			name: "an out-of-window request accepted",
			answers: func(a []Answer) []Answer {
				a[6] = Answer{6, 202, "r6"}
				return a
			},
			precision: 1, recall: 1, problems: 2, // status; accepted but never decided
		},
		{
			name: "a request never answered",
			answers: func(a []Answer) []Answer {
				return append(a[:2:2], a[3:]...)
			},
			precision: 1, recall: 0.5, problems: 2, // status 0; a decision for a receipt no submission got
		},
		{
			name: "decided twice",
			decisions: func(d []Decision) []Decision {
				return append(d, d[1])
			},
			counts: true, precision: 1, recall: 1, problems: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, d := handAnswers(), handDecisions()
			if tc.answers != nil {
				a = tc.answers(a)
			}
			if tc.decisions != nil {
				d = tc.decisions(d)
			}
			sc := handTruth().Score(a, d)
			require.Equal(t, tc.ok, sc.OK(), "ok; mismatches: %v", sc.Mismatches)
			require.Equal(t, tc.counts, sc.CountsOK, "counts ok; score: %+v", sc)
			require.InDelta(t, tc.precision, sc.Precision, 1e-9, "precision")
			require.InDelta(t, tc.recall, sc.Recall, 1e-9, "recall")
			require.Equal(t, tc.problems, sc.MismatchCount, "mismatches: %v", sc.Mismatches)
			require.Len(t, sc.Mismatches, sc.MismatchCount)
			require.Equal(t, tc.ok, sc.OnePerPerson && tc.ok)
		})
	}
}

// TestTruthBotsLimited: a per-device limit may refuse a bot (the
// expectations follow what it let through) but never a person.
func TestTruthBotsLimited(t *testing.T) {
	t.Parallel()
	accepted := Want{Status: http.StatusAccepted, Window: "open"}
	tr := Truth{DeviceCap: 2}
	var answers []Answer
	var decisions []Decision
	// Persons 0–3 submit themselves, and bot 1 submits for all four.
	for p := range 4 {
		seq := len(tr.Submissions)
		tr.Submissions = append(tr.Submissions, Submission{Seq: seq, Class: ClassFirst, Person: p, Want: accepted, RetryOf: -1})
		r := fmt.Sprintf("r%d", seq)
		answers = append(answers, Answer{seq, 202, r})
		decisions = append(decisions, Decision{Receipt: r, Kind: prereg.KindRegistered, IdentityKey: fmt.Sprint("k", p), RegistrationID: int64(p + 1)})
	}
	for p := range 4 {
		seq := len(tr.Submissions)
		tr.Submissions = append(tr.Submissions, Submission{Seq: seq, Class: ClassBot, Bot: 1, Person: p, Want: accepted, RetryOf: -1})
		r := fmt.Sprintf("r%d", seq)
		switch p {
		case 0, 1:
			answers = append(answers, Answer{seq, 202, r})
			decisions = append(decisions, Decision{Receipt: r, Kind: prereg.KindDuplicate, Reason: prereg.ReasonProxy, IdentityKey: fmt.Sprint("k", p), RegistrationID: int64(p + 1)})
		case 2:
			answers = append(answers, Answer{seq, 202, r})
			decisions = append(decisions, Decision{Receipt: r, Kind: prereg.KindHeld, Reason: prereg.ReasonDeviceLimit, IdentityKey: fmt.Sprint("k", p)})
		case 3:
			answers = append(answers, Answer{seq, 429, ""})
		}
	}
	require.Equal(t, 2, tr.Expected().Held, "without a limit: 4 people, cap 2")
	sc := tr.Score(answers, decisions)
	require.True(t, sc.OK(), "mismatches: %v", sc.Mismatches)
	require.Equal(t, 1, sc.BotsLimited)
	require.Equal(t, 1, sc.Expected.Held, "3 people got through, cap 2")
	require.Equal(t, 7, sc.Expected.Accepted)
	require.True(t, sc.HeldExact)

	// The same refusal for a person is a mismatch.
	answers[0] = Answer{0, 429, ""}
	sc = tr.Score(answers, decisions[1:])
	require.False(t, sc.OK())
	require.Equal(t, "status 429, want 202", sc.Mismatches[0].Problem)
}

// referenceSystem answers and decides a surge the way docs/DESIGN.md says a
// correct prereg does, one submission at a time in the surge's order, with
// the device cap and the phone cap (counting, like the device cap, the
// people a phone was given for) decided before the duplicate check.
func referenceSystem(tb testing.TB, w world) ([]Answer, []Decision) {
	tb.Helper()
	var answers []Answer
	var decisions []Decision
	receipts := map[int]string{}
	regOf := map[string]int64{}                  // identity → registration
	devicePeople := map[string]map[string]bool{} // device|window → identities
	phonePeople := map[string]map[string]bool{}  // phone → identities
	for _, s := range w.surge.Submissions {
		a := Answer{Seq: s.Seq, Status: s.Want.Status}
		if s.Want.Status != http.StatusAccepted {
			answers = append(answers, a)
			continue
		}
		if s.Class == ClassRetry {
			a.Receipt = receipts[s.RetryOf]
			answers = append(answers, a)
			continue
		}
		a.Receipt = fmt.Sprintf("r%d", s.Seq)
		receipts[s.Seq] = a.Receipt
		answers = append(answers, a)

		var body struct {
			Provider, IdentityToken, Birthdate, DeviceID, Phone string
		}
		require.NoError(tb, json.Unmarshal(s.Body, &struct {
			Provider      *string `json:"provider"`
			IdentityToken *string `json:"identity_token"`
			Birthdate     *string `json:"birthdate"`
			DeviceID      *string `json:"device_id"`
			Phone         *string `json:"phone"`
		}{&body.Provider, &body.IdentityToken, &body.Birthdate, &body.DeviceID, &body.Phone}))
		d := Decision{Receipt: a.Receipt}
		claims, err := w.idps[body.Provider].Verify(body.IdentityToken)
		switch {
		case err != nil:
			d.Kind, d.Reason = prereg.KindRejected, prereg.ReasonInvalidToken
		case claims.Birthdate != body.Birthdate:
			d.Kind, d.Reason, d.IdentityKey = prereg.KindRejected, prereg.ReasonBirthdateMismatch, claims.Person
		default:
			d.IdentityKey = claims.Person
			k := body.DeviceID + "|" + s.Want.Window
			if devicePeople[k] == nil {
				devicePeople[k] = map[string]bool{}
			}
			people := devicePeople[k]
			if !people[claims.Person] && len(people) >= w.c.DeviceCap {
				d.Kind, d.Reason = prereg.KindHeld, prereg.ReasonDeviceLimit
				break
			}
			people[claims.Person] = true
			phone := NormalizePhone(body.Phone)
			if phonePeople[phone] == nil {
				phonePeople[phone] = map[string]bool{}
			}
			if !phonePeople[phone][claims.Person] && len(phonePeople[phone]) >= w.c.PhoneCap() {
				d.Kind, d.Reason = prereg.KindHeld, prereg.ReasonPhoneCap
				break
			}
			phonePeople[phone][claims.Person] = true
			if reg, ok := regOf[claims.Person]; ok {
				d.Kind, d.Reason, d.RegistrationID = prereg.KindDuplicate, prereg.ReasonSameDevice, reg
			} else {
				regOf[claims.Person] = int64(len(regOf) + 1)
				d.Kind, d.RegistrationID = prereg.KindRegistered, regOf[claims.Person]
			}
		}
		decisions = append(decisions, d)
	}
	return answers, decisions
}

// TestTruthReferenceSystem scores a correct system on whole surges: every
// count must match the truth exactly.
func TestTruthReferenceSystem(t *testing.T) {
	t.Parallel()
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			w := sharedWorld(t, seed, 4000)
			answers, decisions := referenceSystem(t, w)
			sc := w.surge.Truth().Score(answers, decisions)
			require.True(t, sc.OK(), "mismatches: %v", sc.Mismatches)
			require.True(t, sc.HeldExact, "held %d, want %d", sc.Held, sc.Expected.Held)
			require.Equal(t, 1.0, sc.Precision)
			require.Equal(t, 1.0, sc.Recall)
			require.Equal(t, sc.Expected.Persons, sc.Registered)
			require.Equal(t, sc.Expected.Duplicate, sc.Duplicate)
			require.Equal(t, sc.Expected.Accepted, sc.Decided)

			// Losing one person's every decision is caught.
			victim := -1
			for _, s := range w.surge.Submissions {
				if s.Class == ClassFirst {
					victim = s.Person
					break
				}
			}
			var fewer []Decision
			owner := map[string]int{}
			for _, a := range answers {
				owner[a.Receipt] = a.Seq
			}
			for _, d := range decisions {
				if w.surge.Submissions[owner[d.Receipt]].Person != victim {
					fewer = append(fewer, d)
				}
			}
			sc = w.surge.Truth().Score(answers, fewer)
			require.False(t, sc.OK())
			require.Less(t, sc.Recall, 1.0)
		})
	}
}
