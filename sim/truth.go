package sim

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// Truth is what scoring needs of a surge: every submission with what it
// really is, and the campaign's per-device and per-phone caps.
type Truth struct {
	Submissions []Submission
	DeviceCap   int
	// PhoneCap is the campaign's limits.phone_cap; 0 means its default.
	PhoneCap int
}

// Answer is what the intake answered to one submission.
type Answer struct {
	Seq     int    // Submission.Seq
	Status  int    // 0 when no answer came (transport error, never sent)
	Receipt string // of a 202
}

// Decision is a decision as read back from the database, reduced to what
// scoring needs; the caller reads it (decisions joined to nothing), so
// scoring stays independent of the database.
type Decision struct {
	Receipt        string
	Kind           prereg.Kind
	Reason         prereg.Reason
	IdentityKey    string // "" when the provider gave none
	RegistrationID int64  // 0 when none
}

// Expected is what a correct system makes of the surge, from the truth
// alone.
type Expected struct {
	Submitted int         `json:"submitted"`
	Status    map[int]int `json:"status"`
	// Accepted is the number of distinct receipts: 202s, less the retries
	// that must repeat their original's receipt.
	Accepted int `json:"accepted"`
	// Persons is the distinct people with a valid in-window submission not
	// only from over-cap devices: exactly the people to register.
	Persons    int `json:"persons"`
	Registered int `json:"registered"`
	// Held is what the caps hold if every submission of a bot beyond its
	// first DeviceCap people (PhoneCap for a bot that rotates device ids)
	// is held; a dedupe that decides "already registered" before the cap
	// holds fewer (they are then duplicates), and the phone cap counts
	// only registrations, so DuplicateOrHeld is the exact figure and Held
	// the most.
	Held            int                   `json:"held"`
	Duplicate       int                   `json:"duplicate"`
	DuplicateOrHeld int                   `json:"duplicate_or_held"`
	Rejected        int                   `json:"rejected"`
	RejectedBy      map[prereg.Reason]int `json:"rejected_by"`
}

// Mismatch is one place where the system's answers or decisions differ
// from the truth. It names the submission by its place in the surge and
// its class, never by personal data.
type Mismatch struct {
	Seq     int    `json:"seq"` // -1 when no submission is concerned
	Class   Class  `json:"class,omitempty"`
	Problem string `json:"problem"`
}

// MaxMismatches bounds Score.Mismatches; Score.MismatchCount counts all.
const MaxMismatches = 100

// Score is the system's result against the truth.
type Score struct {
	// Expected is Truth.Expected, less the bot submissions a per-device
	// limit refused (BotsLimited): the limit may stop a bot, never a
	// person.
	Expected    Expected `json:"expected"`
	BotsLimited int      `json:"bots_limited"`

	Status     map[int]int           `json:"status"`
	Accepted   int                   `json:"accepted"` // distinct receipts answered 202
	Decided    int                   `json:"decided"`
	Registered int                   `json:"registered"`
	Duplicate  int                   `json:"duplicate"`
	Held       int                   `json:"held"`
	Rejected   int                   `json:"rejected"`
	RejectedBy map[prereg.Reason]int `json:"rejected_by"`

	Persons              int `json:"persons"`
	PersonsRegistered    int `json:"persons_registered"`
	Registrations        int `json:"registrations"`
	CorrectRegistrations int `json:"correct_registrations"`
	// Precision is correct registrations / registrations: a registration is
	// correct when it is one real person's first. Recall is persons
	// registered / persons.
	Precision float64 `json:"dedupe_precision"`
	Recall    float64 `json:"dedupe_recall"`
	// OnePerPerson: every person registered exactly once, nobody else.
	OnePerPerson bool `json:"one_per_person"`
	// CountsOK: accepted, registered and rejected (by reason) exactly as
	// expected, duplicate+held exactly, held at most Expected.Held.
	CountsOK bool `json:"counts_ok"`
	// HeldExact: held is exactly Expected.Held (the cap decided first).
	HeldExact bool `json:"held_exact"`

	MismatchCount int        `json:"mismatch_count"`
	Mismatches    []Mismatch `json:"mismatches"`

	// heldReason is, per bot, the reason its submissions are held for:
	// the cap that stops it.
	heldReason map[int]prereg.Reason
}

// OK reports whether the system did exactly what the truth says.
func (s Score) OK() bool { return s.CountsOK && s.OnePerPerson && s.MismatchCount == 0 }

// bots returns, per bot, the distinct people it submitted for.
func (t Truth) bots() map[int]map[int]bool {
	out := map[int]map[int]bool{}
	for i := range t.Submissions {
		s := &t.Submissions[i]
		if s.Class != ClassBot {
			continue
		}
		if out[s.Bot] == nil {
			out[s.Bot] = map[int]bool{}
		}
		out[s.Bot][s.Person] = true
	}
	return out
}

// rotating returns the bots that make up a device id for each person:
// the phone cap stops them, not the device cap.
func (t Truth) rotating() map[int]bool {
	first := map[int]string{}
	out := map[int]bool{}
	for i := range t.Submissions {
		s := &t.Submissions[i]
		if s.Class != ClassBot {
			continue
		}
		if d, seen := first[s.Bot]; !seen {
			first[s.Bot] = s.Device
		} else if d != s.Device {
			out[s.Bot] = true
		}
	}
	return out
}

// botCaps returns, per bot, the cap that stops it and the reason its
// submissions beyond it are held for.
func (t Truth) botCaps() (caps map[int]int, reasons map[int]prereg.Reason) {
	rot := t.rotating()
	caps, reasons = map[int]int{}, map[int]prereg.Reason{}
	for i := range t.Submissions {
		s := &t.Submissions[i]
		if s.Class != ClassBot {
			continue
		}
		caps[s.Bot], reasons[s.Bot] = t.DeviceCap, prereg.ReasonDeviceLimit
		if rot[s.Bot] {
			caps[s.Bot], reasons[s.Bot] = t.phoneCap(), prereg.ReasonPhoneCap
		}
	}
	return caps, reasons
}

func (t Truth) phoneCap() int {
	if t.PhoneCap < 1 {
		return campaign.DefaultPhoneCap
	}
	return t.PhoneCap
}

// limited returns the bot submissions the intake refused with 429: a
// per-device limit is allowed to stop a bot (not a person: no other
// device sends more than DeviceBudget requests), and the expectations
// follow what it let through.
func (t Truth) limited(answers []Answer) map[int]bool {
	out := map[int]bool{}
	for _, a := range answers {
		if a.Seq >= 0 && a.Seq < len(t.Submissions) && a.Status == http.StatusTooManyRequests && t.Submissions[a.Seq].Class == ClassBot {
			out[a.Seq] = true
		}
	}
	return out
}

// persons returns the people to register: a valid in-window submission
// (accepted, no rejection foreseen) not only from over-cap bots.
func (t Truth) persons() map[int]bool {
	bots := t.bots()
	caps, _ := t.botCaps()
	out := map[int]bool{}
	for i := range t.Submissions {
		s := &t.Submissions[i]
		if s.Person < 0 || s.Want.Status != http.StatusAccepted || s.Want.Kind != "" {
			continue
		}
		if s.Class == ClassBot && len(bots[s.Bot]) > caps[s.Bot] {
			continue
		}
		out[s.Person] = true
	}
	return out
}

// Expected computes what a correct system makes of the surge.
func (t Truth) Expected() Expected { return t.expected(nil) }

// expected is Expected when the bot submissions in limited were refused
// by a per-device limit.
func (t Truth) expected(limited map[int]bool) Expected {
	e := Expected{Submitted: len(t.Submissions), Status: map[int]int{}, RejectedBy: map[prereg.Reason]int{}}
	valid := 0
	botPeople := map[int]map[int]bool{}
	for i := range t.Submissions {
		s := &t.Submissions[i]
		if limited[i] {
			e.Status[http.StatusTooManyRequests]++
			continue
		}
		e.Status[s.Want.Status]++
		if s.Want.Status != http.StatusAccepted || s.Class == ClassRetry {
			continue
		}
		if s.Class == ClassBot {
			if botPeople[s.Bot] == nil {
				botPeople[s.Bot] = map[int]bool{}
			}
			botPeople[s.Bot][s.Person] = true
		}
		e.Accepted++
		switch s.Want.Kind {
		case prereg.KindRejected:
			e.Rejected++
			e.RejectedBy[s.Want.Reason]++
		case "":
			valid++
		}
	}
	e.Persons = len(t.persons())
	e.Registered = e.Persons
	caps, _ := t.botCaps()
	for bot, people := range botPeople {
		e.Held += max(0, len(people)-caps[bot])
	}
	e.DuplicateOrHeld = valid - e.Persons
	e.Duplicate = e.DuplicateOrHeld - e.Held
	return e
}

// Score compares the answers (one per submission sent) and the decisions
// read back from the database with the truth: first each answer, which
// also tells which submission owns each receipt, then each decision of a
// receipt, then the registrations against the people to register, and
// last the totals against the expectations.
func (t Truth) Score(answers []Answer, decisions []Decision) Score {
	limited := t.limited(answers)
	sc := Score{Expected: t.expected(limited), Status: map[int]int{}, RejectedBy: map[prereg.Reason]int{}, BotsLimited: len(limited)}
	_, sc.heldReason = t.botCaps()
	answer := t.answerOf(answers)
	owner := sc.scoreAnswers(t.Submissions, answer, limited)
	persons := t.persons()
	sc.Persons = len(persons)
	regs := sc.scoreDecisions(t.Submissions, owner, decisions)
	sc.scoreRegistrations(persons, regs)
	sc.compareCounts()
	return sc
}

// mismatch records one mismatch; past MaxMismatches it is only counted.
func (sc *Score) mismatch(seq int, class Class, format string, args ...any) {
	sc.MismatchCount++
	if len(sc.Mismatches) < MaxMismatches {
		sc.Mismatches = append(sc.Mismatches, Mismatch{Seq: seq, Class: class, Problem: fmt.Sprintf(format, args...)})
	}
}

// answerOf places the answers by submission; a submission never answered
// has status 0.
func (t Truth) answerOf(answers []Answer) []Answer {
	answer := make([]Answer, len(t.Submissions))
	for i := range answer {
		answer[i] = Answer{Seq: i}
	}
	for _, a := range answers {
		if a.Seq >= 0 && a.Seq < len(t.Submissions) {
			answer[a.Seq] = a
		}
	}
	return answer
}

// scoreAnswers checks each answer's status and receipt, and returns which
// submission owns each receipt (receipt → Seq): the receipts that need a
// decision.
func (sc *Score) scoreAnswers(subs []Submission, answer []Answer, limited map[int]bool) map[string]int {
	owner := map[string]int{}
	for i := range subs {
		s, a := &subs[i], answer[i]
		sc.Status[a.Status]++
		if a.Status != s.Want.Status && !limited[i] {
			sc.mismatch(i, s.Class, "status %d, want %d", a.Status, s.Want.Status)
		}
		if a.Status != http.StatusAccepted || s.Class == ClassRetry {
			continue
		}
		if a.Receipt == "" {
			sc.mismatch(i, s.Class, "202 without a receipt")
			continue
		}
		if prev, dup := owner[a.Receipt]; dup {
			sc.mismatch(i, s.Class, "got the receipt of submission %d", prev)
			continue
		}
		owner[a.Receipt] = i
	}
	// Retries after their originals: a retry owns a receipt only when its
	// original's is not the one it got.
	for i := range subs {
		s, a := &subs[i], answer[i]
		if s.Class != ClassRetry || a.Status != http.StatusAccepted || s.RetryOf < 0 {
			continue
		}
		if orig := answer[s.RetryOf]; orig.Status == http.StatusAccepted && orig.Receipt != a.Receipt {
			sc.mismatch(i, s.Class, "a retry with the same Idempotency-Key got a new receipt")
		}
		if _, ok := owner[a.Receipt]; !ok && a.Receipt != "" {
			owner[a.Receipt] = i // a receipt of its own (its original's was lost, or intake erred): it needs a decision too
		}
	}
	sc.Accepted = len(owner)
	return owner
}

// registrations is what the decisions say of the registrations: whose
// each one is, and each person's.
type registrations struct {
	person map[int64]int   // registration → person
	of     map[int][]int64 // person → registrations
}

// scoreDecisions checks that every receipt owned is decided once, as its
// submission's class allows, that a duplicate names its own person's
// registration and that identity keys and people match one to one.
func (sc *Score) scoreDecisions(subs []Submission, owner map[string]int, decisions []Decision) registrations {
	regs := registrations{person: map[int64]int{}, of: map[int][]int64{}}
	decided := map[string]bool{}
	type dup struct {
		seq int
		reg int64
	}
	var dups []dup
	ids := identities{keyPerson: map[string]int{}, personKey: map[int]string{}}
	for _, d := range decisions {
		seq, ok := owner[d.Receipt]
		if !ok {
			sc.mismatch(-1, "", "a %s decision for a receipt no submission was given", d.Kind)
			continue
		}
		s := &subs[seq]
		if decided[d.Receipt] {
			sc.mismatch(seq, s.Class, "decided twice")
			continue
		}
		decided[d.Receipt] = true
		sc.countDecision(seq, s, d)
		sc.checkKind(seq, s, d)
		if d.Kind == prereg.KindRegistered {
			sc.checkRegistered(seq, s, d, regs)
		}
		if d.Kind == prereg.KindDuplicate {
			dups = append(dups, dup{seq, d.RegistrationID})
		}
		if d.IdentityKey != "" && s.Person >= 0 {
			sc.checkIdentity(seq, s, d.IdentityKey, ids)
		}
	}
	for r, seq := range owner {
		if !decided[r] {
			sc.mismatch(seq, subs[seq].Class, "accepted but never decided")
		}
	}
	for _, d := range dups {
		p, ok := regs.person[d.reg]
		switch {
		case !ok:
			sc.mismatch(d.seq, subs[d.seq].Class, "duplicate of registration %d, which no registered decision names", d.reg)
		case p != subs[d.seq].Person:
			sc.mismatch(d.seq, subs[d.seq].Class, "duplicate of another person's registration")
		}
	}
	return regs
}

// countDecision counts a decision by kind (and a rejection by reason).
func (sc *Score) countDecision(seq int, s *Submission, d Decision) {
	sc.Decided++
	switch d.Kind {
	case prereg.KindRegistered:
		sc.Registered++
	case prereg.KindDuplicate:
		sc.Duplicate++
	case prereg.KindHeld:
		sc.Held++
	case prereg.KindRejected:
		sc.Rejected++
		sc.RejectedBy[d.Reason]++
	default:
		sc.mismatch(seq, s.Class, "unknown decision kind %q", d.Kind)
	}
}

// checkKind checks a decision against what its submission wants: the
// foreseen decision when there is one, else registered or duplicate, and
// held only for a bot (the only devices and phones over their caps), for
// the cap that stops it.
func (sc *Score) checkKind(seq int, s *Submission, d Decision) {
	switch {
	case s.Want.Kind != "":
		if d.Kind != s.Want.Kind || d.Reason != s.Want.Reason {
			sc.mismatch(seq, s.Class, "decided %s/%s, want %s/%s", d.Kind, d.Reason, s.Want.Kind, s.Want.Reason)
		}
	case d.Kind == prereg.KindHeld && s.Class != ClassBot:
		sc.mismatch(seq, s.Class, "held (%s), want registered or duplicate: the device and the phone are under their caps", d.Reason)
	case d.Kind == prereg.KindHeld && d.Reason != sc.heldReason[s.Bot]:
		sc.mismatch(seq, s.Class, "held (%s), want held (%s): the bot's other cap stops it", d.Reason, sc.heldReason[s.Bot])
	case d.Kind != prereg.KindRegistered && d.Kind != prereg.KindDuplicate && d.Kind != prereg.KindHeld:
		sc.mismatch(seq, s.Class, "decided %s/%s, want registered or duplicate", d.Kind, d.Reason)
	}
}

// checkRegistered notes whose a registered decision's registration is; a
// registration named by two registered decisions is a mismatch.
func (sc *Score) checkRegistered(seq int, s *Submission, d Decision, regs registrations) {
	if d.RegistrationID == 0 {
		sc.mismatch(seq, s.Class, "registered without a registration")
		return
	}
	if p, seen := regs.person[d.RegistrationID]; seen {
		sc.mismatch(seq, s.Class, "registration %d named by two registered decisions (people %t)", d.RegistrationID, p == s.Person)
		return
	}
	regs.person[d.RegistrationID] = s.Person
	regs.of[s.Person] = append(regs.of[s.Person], d.RegistrationID)
}

// identities pairs the identity keys the decisions name with the people
// of the truth.
type identities struct {
	keyPerson map[string]int
	personKey map[int]string
}

// checkIdentity checks that a person has one identity key and an identity
// key one person.
func (sc *Score) checkIdentity(seq int, s *Submission, key string, ids identities) {
	if k, seen := ids.personKey[s.Person]; seen && k != key {
		sc.mismatch(seq, s.Class, "the person has two identity keys")
	}
	ids.personKey[s.Person] = key
	if p, seen := ids.keyPerson[key]; seen && p != s.Person {
		sc.mismatch(seq, s.Class, "two people share an identity key")
	}
	ids.keyPerson[key] = s.Person
}

// scoreRegistrations holds the registrations against the people to
// register: precision, recall and one registration per person.
func (sc *Score) scoreRegistrations(persons map[int]bool, regs registrations) {
	sc.Registrations = len(regs.person)
	people := make([]int, 0, len(regs.of))
	for p := range regs.of {
		people = append(people, p)
	}
	sort.Ints(people) // mismatches in a stable order
	for _, p := range people {
		if !persons[p] {
			sc.mismatch(-1, "", "a registration for someone who should not be registered")
			continue
		}
		sc.PersonsRegistered++
		sc.CorrectRegistrations++ // the first; any more are doubles
		if n := len(regs.of[p]); n > 1 {
			sc.mismatch(-1, "", "one person registered %d times", n)
		}
	}
	sc.Precision, sc.Recall = 1, 1
	if sc.Registrations > 0 {
		sc.Precision = float64(sc.CorrectRegistrations) / float64(sc.Registrations)
	} else if sc.Persons > 0 {
		sc.Precision = 0
	}
	if sc.Persons > 0 {
		sc.Recall = float64(sc.PersonsRegistered) / float64(sc.Persons)
	}
	sc.OnePerPerson = sc.Registrations == sc.Persons && sc.CorrectRegistrations == sc.Persons
}

// compareCounts holds the totals against the expectations; held may fall
// short of Expected.Held (see Expected.Held), duplicate plus held may not.
func (sc *Score) compareCounts() {
	e := sc.Expected
	sc.HeldExact = sc.Held == e.Held
	sc.CountsOK = sc.Accepted == e.Accepted && sc.Registered == e.Registered &&
		sc.Rejected == e.Rejected && sameCounts(sc.RejectedBy, e.RejectedBy) &&
		sc.Duplicate+sc.Held == e.DuplicateOrHeld && sc.Held <= e.Held
}

func sameCounts(a, b map[prereg.Reason]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
