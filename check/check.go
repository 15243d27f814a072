// Package check verifies the invariants of docs/DESIGN.md, "Invariants", on what is
// in PostgreSQL and JetStream: what `prereg check` and the demo run. Each
// invariant is a query (or a scan of the verified stream) that finds its
// violations; the schema's constraints should make most of them impossible,
// so these checks catch a dropped constraint, a bug that bypassed one, or a
// decision that went missing between the stream and the database.
package check

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/worker"
)

// Invariant is the result of one invariant.
type Invariant struct {
	ID         int      `json:"id"`
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Violations int      `json:"violations"`
	Examples   []string `json:"examples,omitempty"` // pseudonymous: receipts, row ids, keys
	Note       string   `json:"note,omitempty"`
}

// Report is the result of a check.
type Report struct {
	Campaign   string      `json:"campaign"`
	OK         bool        `json:"ok"`
	Invariants []Invariant `json:"invariants"`
	// InFlight counts accepted intents not yet decided: still in the
	// submitted stream, or verified but not yet written by dedupe. They are
	// not violations while the pipeline runs; `check --settled` counts them.
	InFlight int `json:"in_flight"`
	// DeadLetters counts outcomes not decided but recorded as dead letters
	// (docs/STREAMS.md, "Dead letters"): accounted for, not lost, and left
	// to an operator to re-drive.
	DeadLetters int       `json:"dead_letters"`
	Outcomes    int       `json:"outcomes"`
	Checked     time.Time `json:"checked_at"`
}

// Failed names the invariants that failed, e.g. "2 one registration per person".
func (r *Report) Failed() []string {
	var out []string
	for _, inv := range r.Invariants {
		if !inv.OK {
			out = append(out, fmt.Sprintf("%d %s", inv.ID, inv.Name))
		}
	}
	return out
}

// Options configure a check.
type Options struct {
	// JS, when set, lets invariant 1 match the verified stream against the
	// decisions and invariant 6 scan the stream. Without it those parts are
	// checked on the database alone, and the report says so.
	JS jetstream.JetStream
	// Settled treats intents still in flight as lost: for a pipeline that
	// has been drained (the demo, after its run).
	Settled bool
	// MaxExamples bounds the examples listed per invariant.
	MaxExamples int
}

// Run checks every invariant for one campaign.
func Run(ctx context.Context, pool *pgxpool.Pool, campaignID string, opts Options) (*Report, error) {
	if opts.MaxExamples == 0 {
		opts.MaxExamples = 5
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1)`, campaignID).Scan(&exists); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if !exists {
		return nil, fmt.Errorf("check: campaign %q: %w", campaignID, prereg.ErrCampaignNotFound)
	}
	r := &Report{Campaign: campaignID, Checked: time.Now().UTC()}
	c := &checker{pool: pool, campaign: campaignID, opts: opts}
	steps := []func(context.Context) (Invariant, error){
		c.decidedOnce, c.oneRegistration, c.capacity, c.oneSMS, c.duplicatesNamed, c.personalData,
	}
	for _, step := range steps {
		inv, err := step(ctx)
		if err != nil {
			return nil, fmt.Errorf("check invariant %d: %w", len(r.Invariants)+1, err)
		}
		r.Invariants = append(r.Invariants, inv)
	}
	r.InFlight, r.Outcomes, r.DeadLetters = c.inFlight, c.outcomes, c.deadLettered
	r.OK = len(r.Failed()) == 0
	return r, nil
}

type checker struct {
	pool     *pgxpool.Pool
	campaign string
	opts     Options

	inFlight     int
	outcomes     int
	deadLettered int
	// streamScanned is set once the verified stream was read.
	streamScanned bool
	streamLeaks   []string
}

// examples runs a query whose rows are one text column each and returns
// the count and the first few.
func (c *checker) examples(ctx context.Context, sql string, args ...any) (int, []string, error) {
	rows, err := c.pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	n := 0
	var ex []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return 0, nil, err
		}
		n++
		if len(ex) < c.opts.MaxExamples {
			ex = append(ex, s)
		}
	}
	return n, ex, rows.Err()
}

func result(id int, name string, n int, ex []string, note string) Invariant {
	return Invariant{ID: id, Name: name, OK: n == 0, Violations: n, Examples: ex, Note: note}
}

// 1. Every intent answered 202 reaches exactly one decision.
func (c *checker) decidedOnce(ctx context.Context) (Invariant, error) {
	const name = "every accepted intent reaches exactly one decision"
	var n int
	var ex []string
	add := func(k int, e []string) {
		n += k
		for _, s := range e {
			if len(ex) < c.opts.MaxExamples {
				ex = append(ex, s)
			}
		}
	}
	// Counted twice: the primary key forbids it; a dropped key would not.
	k, e, err := c.examples(ctx, `SELECT 'decided twice: ' || receipt FROM decisions WHERE campaign = $1 GROUP BY receipt HAVING count(*) > 1`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)
	// A decision must be one of the four.
	k, e, err = c.examples(ctx, `SELECT 'unknown kind: ' || receipt FROM decisions WHERE campaign = $1 AND kind NOT IN ('registered','duplicate','held','rejected')`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)
	// A registered decision names a registration of the same person.
	k, e, err = c.examples(ctx, `SELECT 'registered without its registration: ' || d.receipt FROM decisions d
		LEFT JOIN registrations r ON r.id = d.registration_id AND r.campaign = d.campaign
		WHERE d.campaign = $1 AND d.kind = 'registered' AND (r.id IS NULL OR r.identity_key IS DISTINCT FROM d.identity_key)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)
	// Every registration comes from a registered decision (or a released
	// held one): otherwise a person was registered without a decision.
	k, e, err = c.examples(ctx, `SELECT 'registration without decision: ' || r.id FROM registrations r
		WHERE r.campaign = $1 AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.campaign = r.campaign AND d.registration_id = r.id
		    AND (d.kind = 'registered' OR (d.kind = 'held' AND d.review = 'released')))`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)
	// A review is recorded only beside a held decision, and a release
	// registers the person (unless they already were).
	k, e, err = c.examples(ctx, `SELECT 'released but not registered: ' || d.receipt FROM decisions d
		WHERE d.campaign = $1 AND d.review = 'released'
		  AND NOT EXISTS (SELECT 1 FROM registrations r WHERE r.campaign = d.campaign AND r.identity_key = d.identity_key)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)
	k, e, err = c.examples(ctx, `SELECT 'review beside a non-held decision: ' || receipt FROM decisions WHERE campaign = $1 AND review IS NOT NULL AND kind <> 'held'`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)
	// A cancellation asked for a decided submission has taken effect
	// (or is void for another birth date); one still pending behind its
	// decision was lost between the two. A held submission's waits for
	// the review.
	k, e, err = c.examples(ctx, `SELECT 'cancellation not honoured: ' || q.receipt FROM cancellations q
		JOIN decisions d ON d.receipt = q.receipt
		WHERE d.campaign = $1 AND q.outcome IS NULL AND NOT (d.kind = 'held' AND d.review IS NULL)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	add(k, e)

	note := ""
	if c.opts.JS == nil {
		note = "stream not checked (no NATS connection): decisions checked on the database alone"
		return result(1, name, n, ex, note), nil
	}
	missing, extra, err := c.matchStream(ctx)
	if err != nil {
		return Invariant{}, err
	}
	for _, s := range missing {
		add(1, []string{"accepted, never decided: " + s})
	}
	for _, s := range extra {
		add(1, []string{"decided without an outcome in the stream: " + s})
	}
	return result(1, name, n, ex, note), nil
}

// matchStream reads the campaign's outcomes from the verified stream and
// compares them with the decisions: every outcome decided, every decision
// from an outcome. Intents still in the submitted stream are in flight.
func (c *checker) matchStream(ctx context.Context) (missing, extra []string, err error) {
	decided := map[string]bool{}
	rows, err := c.pool.Query(ctx, `SELECT receipt FROM decisions WHERE campaign = $1`, c.campaign)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return nil, nil, err
		}
		decided[r] = false
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}

	var outcomes []prereg.Outcome
	err = scanStream(ctx, c.opts.JS, stream.Verified, func(data []byte) {
		c.scanLeaks(data)
		var o prereg.Outcome
		if stream.Decode(data, &o) == nil && o.Campaign == c.campaign {
			outcomes = append(outcomes, o)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	c.streamScanned = true
	c.outcomes = len(outcomes)
	// Outcomes without a decision are in flight while dedupe has not yet
	// reached them; settled, they are lost.
	var undecided []string
	for _, o := range outcomes {
		if _, ok := decided[o.Receipt]; ok {
			decided[o.Receipt] = true
			continue
		}
		undecided = append(undecided, o.Receipt)
	}
	undecided, err = c.withoutDeadLetters(ctx, undecided)
	if err != nil {
		return nil, nil, err
	}
	pending, err := pendingSubmitted(ctx, c.opts.JS)
	if err != nil {
		return nil, nil, err
	}
	c.inFlight = len(undecided) + pending
	if c.opts.Settled {
		missing = undecided
		if pending > 0 {
			missing = append(missing, fmt.Sprintf("%d intents still in %s", pending, stream.Submitted))
		}
	}
	for r, seen := range decided {
		if !seen {
			extra = append(extra, r)
		}
	}
	return missing, extra, nil
}

// withoutDeadLetters drops the receipts recorded as dead letters of the
// verified stream: such an outcome is accounted for, neither in flight nor
// lost.
func (c *checker) withoutDeadLetters(ctx context.Context, receipts []string) ([]string, error) {
	if len(receipts) == 0 {
		return receipts, nil
	}
	rows, err := c.pool.Query(ctx, `SELECT DISTINCT msg_id FROM dead_letters WHERE stream = $1 AND msg_id = ANY($2)`, stream.Verified, receipts)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	dead, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	c.deadLettered = len(dead)
	isDead := make(map[string]bool, len(dead))
	for _, r := range dead {
		isDead[r] = true
	}
	out := receipts[:0:0]
	for _, r := range receipts {
		if !isDead[r] {
			out = append(out, r)
		}
	}
	return out, nil
}

// pendingSubmitted counts messages still in the submitted stream (all
// campaigns: the stream is shared and the count is cheap).
func pendingSubmitted(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, stream.Submitted)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("submitted stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("submitted stream info: %w", err)
	}
	return int(info.State.Msgs), nil
}

// scanStream calls fn with every message's data in a stream, up to the last
// sequence at the time of the call.
func scanStream(ctx context.Context, js jetstream.JetStream, name string, fn func([]byte)) error {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", name, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("stream %s: ordered consumer: %w", name, err)
	}
	// Each fetch asks for no more than remain up to last, and every batch is
	// read to its end: a batch left unread keeps its fetch waiting, in the
	// client, until it expires. A fetch that fails or brings nothing is
	// tried again (a clustered stream answers "no responders" for a moment
	// after its leader moves, and a loaded server may let a fetch expire
	// empty); the scan ends early only when the stream says the messages
	// below last are gone.
	var seen uint64
	failures := 0
	for {
		want := int(min(2000, last-seen))
		got, done := 0, false
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(2*time.Second))
		if err == nil {
			for m := range batch.Messages() {
				got++
				if done {
					continue
				}
				fn(m.Data())
				if md, err := m.Metadata(); err == nil {
					seen = md.Sequence.Stream
					done = seen >= last
				}
			}
			if done {
				return nil
			}
			if berr := batch.Error(); berr != nil && !errors.Is(berr, jetstream.ErrNoMessages) {
				err = berr
			}
		}
		if got > 0 {
			failures = 0
			continue
		}
		if err == nil {
			// Nothing came: were the messages up to last removed meanwhile?
			info, ierr := s.Info(ctx)
			if ierr == nil && (info.State.Msgs == 0 || info.State.FirstSeq > last) {
				return nil
			}
			err = cmp.Or(ierr, errors.New("no messages before the end"))
		}
		if failures++; failures >= scanAttempts {
			return fmt.Errorf("stream %s: fetch after sequence %d: %w", name, seen, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(worker.Backoff(failures, 100*time.Millisecond, 2*time.Second)):
		}
	}
}

// scanAttempts bounds the fetches in a row that bring nothing before a
// stream scan gives up: about half a minute of a stream unreachable.
const scanAttempts = 12

// 2. At most one registration per (campaign, person).
func (c *checker) oneRegistration(ctx context.Context) (Invariant, error) {
	n, ex, err := c.examples(ctx, `SELECT 'registered ' || count(*) || ' times: identity ' || left(identity_key, 12)
		FROM registrations WHERE campaign = $1 GROUP BY identity_key HAVING count(*) > 1`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	return result(2, "at most one registration per person", n, ex, ""), nil
}

// 3. No slot over capacity; at most one appointment per registration.
func (c *checker) capacity(ctx context.Context) (Invariant, error) {
	n1, ex1, err := c.examples(ctx, `SELECT 'slot over capacity: ' || s.clinic || ' ' || s.day || ' band ' || s.band || ' (' || greatest(s.used, coalesce(a.n, 0)) || '/' || s.capacity || ')'
		FROM slots s LEFT JOIN (SELECT clinic, day, band, count(*) AS n FROM appointments WHERE campaign = $1 AND status = 'scheduled' GROUP BY clinic, day, band) a
		  ON a.clinic = s.clinic AND a.day = s.day AND a.band = s.band
		WHERE s.campaign = $1 AND (s.used > s.capacity OR coalesce(a.n, 0) > s.capacity)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	n2, ex2, err := c.examples(ctx, `SELECT 'registration ' || registration_id || ' has ' || count(*) || ' appointments'
		FROM appointments WHERE campaign = $1 AND status = 'scheduled' GROUP BY registration_id HAVING count(*) > 1`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	// A cancelled registration holds no slot: its appointment is
	// cancelled and its slot counted free.
	n3, ex3, err := c.examples(ctx, `SELECT 'cancelled registration ' || a.registration_id || ' still holds ' || a.clinic || ' ' || a.day || ' band ' || a.band
		FROM appointments a WHERE a.campaign = $1 AND a.status = 'scheduled'
		  AND EXISTS (SELECT 1 FROM cancellations c WHERE c.registration_id = a.registration_id)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	// The slots' counters are the live appointments: a cancellation that
	// did not give its slot back (or gave it twice) shows here.
	n4, ex4, err := c.examples(ctx, `SELECT 'slot ' || s.clinic || ' ' || s.day || ' band ' || s.band || ' counts ' || s.used || ', holds ' || coalesce(a.n, 0)
		FROM slots s LEFT JOIN (SELECT clinic, day, band, count(*) AS n FROM appointments WHERE campaign = $1 AND status = 'scheduled' GROUP BY clinic, day, band) a
		  ON a.clinic = s.clinic AND a.day = s.day AND a.band = s.band
		WHERE s.campaign = $1 AND s.used <> coalesce(a.n, 0)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	ex := append(append(append(ex1, ex2...), ex3...), ex4...)
	return result(3, "no slot over capacity, at most one appointment per registration", n1+n2+n3+n4, ex, "cancelled registrations hold no slot"), nil
}

// 4. At most one SMS delivered per appointment; a resend is an explicit,
// recorded operator action. The database can only say what the gateway
// reported; the demo also counts at the simulated handset.
func (c *checker) oneSMS(ctx context.Context) (Invariant, error) {
	n1, ex1, err := c.examples(ctx, `SELECT 'appointment ' || appointment_id || ': ' || count(*) || ' first messages delivered'
		FROM outbox WHERE campaign = $1 AND kind = 'appointment' AND requested_by IS NULL AND state = 'delivered'
		GROUP BY appointment_id HAVING count(*) > 1`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	n2, ex2, err := c.examples(ctx, `SELECT 'appointment ' || appointment_id || ' version ' || version || ' resent without a recorded operator'
		FROM outbox WHERE campaign = $1 AND kind = 'appointment' AND version > 1 AND requested_by IS NULL`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	// A gateway that sent one message version twice reports two deliveries
	// with different message ids.
	n3, ex3, err := c.examples(ctx, `SELECT 'appointment ' || o.appointment_id || ' version ' || o.version || ': ' || count(*) || ' deliveries reported'
		FROM delivery_reports d JOIN outbox o ON o.id = d.outbox_id
		WHERE o.campaign = $1 AND o.kind = 'appointment' AND d.status = 'delivered'
		GROUP BY o.appointment_id, o.version HAVING count(*) > 1`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	// One cancellation message per cancelled registration, delivered at
	// most once.
	n4, ex4, err := c.examples(ctx, `SELECT 'registration ' || o.registration_id || ': ' || count(*) || ' cancellation messages, ' || count(d.id) || ' deliveries reported'
		FROM outbox o LEFT JOIN delivery_reports d ON d.outbox_id = o.id AND d.status = 'delivered'
		WHERE o.campaign = $1 AND o.kind = 'cancellation'
		GROUP BY o.registration_id HAVING count(DISTINCT o.id) > 1 OR count(d.id) > 1`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	ex := append(append(append(ex1, ex2...), ex3...), ex4...)
	return result(4, "at most one SMS delivered per appointment", n1+n2+n3+n4, ex, "counted from delivery reports; the demo also counts at the handset; one cancellation SMS per cancelled registration"), nil
}

// 5. Every duplicate decision names the registration it matched and why.
func (c *checker) duplicatesNamed(ctx context.Context) (Invariant, error) {
	n, ex, err := c.examples(ctx, `SELECT 'duplicate without its match: ' || d.receipt FROM decisions d
		LEFT JOIN registrations r ON r.id = d.registration_id
		WHERE d.campaign = $1 AND d.kind = 'duplicate'
		  AND (d.reason NOT IN ('same_device','other_device','proxy','claim_seen') OR r.id IS NULL
		       OR d.matched_receipt IS NULL OR r.identity_key IS DISTINCT FROM d.identity_key)`, c.campaign)
	if err != nil {
		return Invariant{}, err
	}
	return result(5, "every duplicate names the registration it matched and why", n, ex, ""), nil
}

// phonePattern finds a Korean mobile number standing on its own (not inside
// a hex key or base64 text).
var phonePattern = regexp.MustCompile(`(?:^|[^0-9A-Za-z+])(?:\+82[- ]?1[016789]|01[016789])[- ]?[0-9]{3,4}[- ]?[0-9]{4}(?:$|[^0-9A-Za-z])`)

// forbiddenFields may not appear in the verified stream's messages.
var forbiddenFields = []string{`"identity_token"`, `"person_id"`, `"device_id"`}

func (c *checker) scanLeaks(data []byte) {
	if len(c.streamLeaks) > 10 {
		return
	}
	if phonePattern.Match(data) {
		c.streamLeaks = append(c.streamLeaks, "plain phone in "+stream.Verified)
	}
	for _, f := range forbiddenFields {
		if bytes.Contains(data, []byte(f)) {
			c.streamLeaks = append(c.streamLeaks, f+" in "+stream.Verified)
		}
	}
}

// 6. Personal data only in the forms of docs/DESIGN.md, "Data protection": no phone,
// token or provider person id in plain text in the database or the stream.
func (c *checker) personalData(ctx context.Context) (Invariant, error) {
	// Every text-like column of every table: no plain phone.
	rows, err := c.pool.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')
		  AND table_name <> 'schema_migrations' ORDER BY table_name, column_name`)
	if err != nil {
		return Invariant{}, err
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([3]string, error) {
		var t [3]string
		err := r.Scan(&t[0], &t[1], &t[2])
		return t, err
	})
	if err != nil {
		return Invariant{}, err
	}
	n := 0
	var ex []string
	re := `(^|[^0-9A-Za-z+])(\+82[- ]?1[016789]|01[016789])[- ]?[0-9]{3,4}[- ]?[0-9]{4}($|[^0-9A-Za-z])`
	for _, tc := range cols {
		expr := pgx.Identifier{tc[1]}.Sanitize() + "::text"
		if tc[0] == "campaigns" && tc[1] == "spec" {
			continue // the operator's own file: no personal data by construction
		}
		var hits int
		// bytea as text is hex, which would hide a plain phone in bytes:
		// match its escape form, where printable bytes stay as they are.
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s ~ $1`, pgx.Identifier{tc[0]}.Sanitize(), expr)
		if tc[2] == "bytea" {
			q = fmt.Sprintf(`SELECT count(*) FROM %s WHERE encode(%s, 'escape') ~ $1`, pgx.Identifier{tc[0]}.Sanitize(), pgx.Identifier{tc[1]}.Sanitize())
		}
		if err := c.pool.QueryRow(ctx, q, re).Scan(&hits); err != nil {
			return Invariant{}, fmt.Errorf("scan %s.%s: %w", tc[0], tc[1], err)
		}
		if hits > 0 {
			n += hits
			if len(ex) < c.opts.MaxExamples {
				ex = append(ex, fmt.Sprintf("plain phone in %s.%s (%d rows)", tc[0], tc[1], hits))
			}
		}
	}
	// Columns that would hold what must never be stored.
	k, e, err := c.examples(ctx, `SELECT 'forbidden column ' || table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND column_name IN ('identity_token', 'token', 'person_id', 'ci', 'phone', 'device_id', 'client_addr')`)
	if err != nil {
		return Invariant{}, err
	}
	n += k
	ex = append(ex, e...)
	note := ""
	if c.opts.JS != nil && !c.streamScanned {
		if err := scanStream(ctx, c.opts.JS, stream.Verified, c.scanLeaks); err != nil {
			return Invariant{}, err
		}
	}
	if c.opts.JS == nil {
		note = "stream not scanned (no NATS connection)"
	}
	n += len(c.streamLeaks)
	for _, s := range c.streamLeaks {
		if len(ex) < c.opts.MaxExamples {
			ex = append(ex, s)
		}
	}
	return result(6, "personal data only in its protected forms", n, ex, note), nil
}
