package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Row is one case's line of the reliability table.
type Row struct {
	Case        string
	Submissions int // submissions the load generator sent
	// Accepted is the number of distinct receipts answered 202 (the same
	// Idempotency-Key answers the same receipt twice: one intent).
	Accepted int
	// Decided is the number of those receipts with a decision; Lost the
	// rest; DecidedTwice those with more than one.
	Decided      int
	Lost         int
	DecidedTwice int
	// DupRegistrations counts persons registered more than once, plus
	// registrations with more than one live appointment.
	DupRegistrations int
	// DupSMS counts SMS a handset received beyond the first of a message,
	// plus appointments whose SMS never arrived (shown apart in Notes).
	DupSMS int
	// Recover is the time from the end of the last fault to the last
	// accepted intent decided.
	Recover time.Duration
	// Notes say what the case saw beyond the counts; Failures what broke
	// the promise (the case fails when there is any).
	Notes    []string
	Failures []string
}

// Failf records a broken promise.
func (r *Row) Failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Notef records an observation.
func (r *Row) Notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Table renders rows as the markdown table of docs/RELIABILITY.md.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| case | submissions | 202s | decided | lost | duplicated registrations | duplicate SMS | time to recover | result |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range rows {
		result := "ok"
		if len(r.Failures) > 0 {
			result = "FAIL: " + strings.Join(r.Failures, "; ")
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %s | %s |\n",
			r.Case, r.Submissions, r.Accepted, r.Decided, r.Lost, r.DupRegistrations, r.DupSMS, r.Recover.Round(100*time.Millisecond), escape(result))
	}
	for _, r := range rows {
		if len(r.Notes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n", r.Case)
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// Timeouts bound the phases of Conclude.
type Timeouts struct {
	Settle time.Duration // every receipt decided
	SMS    time.Duration // every appointment's SMS at a handset
}

// Conclude finishes a case after its surge and faults: it waits for every
// receipt to be decided (Recover counts from faultEnd), allocates the open
// window, runs duringSMS (a fault while notify sends, may be nil) while
// waiting for the SMS, then counts duplicates at the database and the
// handsets and runs `prereg check --settled`.
func (s *Stack) Conclude(row *Row, receipts []string, faultEnd time.Time, to Timeouts, duringSMS func(context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), to.Settle+to.SMS+2*time.Minute)
	defer cancel()
	distinct := map[string]bool{}
	for _, r := range receipts {
		distinct[r] = true
	}
	uniq := make([]string, 0, len(distinct))
	for r := range distinct {
		uniq = append(uniq, r)
	}
	row.Accepted = len(uniq)
	decided, err := s.Settle(uniq, to.Settle)
	row.Decided, row.Lost = decided, len(uniq)-decided
	row.Recover = time.Since(faultEnd)
	if err != nil {
		row.Failf("%d accepted intents without a decision (%v)", row.Lost, err)
		if n, perr := s.Pending(ctx); perr == nil {
			row.Notef("%d messages still pending at the consumers", n)
		}
	}
	if _, twice, err := s.Decided(ctx, uniq); err == nil && twice > 0 {
		row.DecidedTwice = twice
		row.Failf("%d receipts decided twice", twice)
	}
	if counts, err := s.DecisionCounts(ctx); err == nil {
		row.Notef("decisions: %s", formatCounts(counts))
	}

	if err := s.Allocate(ctx); err != nil {
		row.Failf("allocate: %v", firstLine(err))
		return
	}
	smsDone := make(chan struct{})
	if duringSMS != nil {
		go func() { defer close(smsDone); duringSMS(ctx) }()
	} else {
		close(smsDone)
	}
	smsErr := s.WaitSMS(to.SMS)
	<-smsDone
	if smsErr != nil {
		// The fault may have ended only now: one more wait.
		smsErr = s.WaitSMS(to.SMS / 2)
	}
	appts, _, err := s.Outbox(ctx)
	if err != nil {
		row.Failf("%v", err)
		return
	}
	st, err := s.SMSStats(ctx)
	if err != nil {
		row.Failf("%v", err)
		return
	}
	row.DupSMS = st.HandsetDuplicates
	row.Notef("%d appointments, %d SMS at the handsets (%d gateway attempts, %d refused)", appts, st.HandsetDeliveries, st.Attempts, st.Refused)
	if smsErr != nil {
		row.Failf("%v", smsErr)
	}
	if st.HandsetDuplicates > 0 {
		row.Failf("%d SMS received twice", st.HandsetDuplicates)
	}
	if st.HandsetDeliveries-st.HandsetDuplicates != appts {
		row.Failf("%d appointments but %d distinct SMS at the handsets", appts, st.HandsetDeliveries-st.HandsetDuplicates)
	}
	regs, apps, err := s.Duplicates(ctx)
	if err != nil {
		row.Failf("%v", err)
		return
	}
	row.DupRegistrations = regs + apps
	if row.DupRegistrations > 0 {
		row.Failf("%d persons registered twice, %d registrations with two appointments", regs, apps)
	}
	failed, err := s.Check(ctx)
	switch {
	case err != nil:
		row.Failf("prereg check: %v", firstLine(err))
	case len(failed) > 0:
		row.Failf("prereg check --settled: %s", strings.Join(failed, "; "))
	}
}

// firstLine shortens an error for the table: its first line and, for a
// command's output, its last.
func firstLine(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	if len(lines) == 1 {
		return lines[0]
	}
	return lines[0] + ": " + lines[len(lines)-1]
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Stable order for a table that is read and diffed.
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
