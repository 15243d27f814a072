package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
)

// RequestStore records a citizen's change of preferred clinic and
// cancellation by receipt (the cancellations and clinic_changes tables)
// and makes them take effect: at once when the receipt is decided, else
// when dedupe decides it (Resolve). It implements intake.Requests and
// dedupe.Requests.
//
// A request counts only when its birth date is the one the receipt's
// submission claimed: intake checks that before answering when the
// receipt is decided, and Resolve checks it when the decision comes later
// (a request with another date is void).
//
// Taking effect on a registration (freeing its slot, cancelling a pending
// appointment SMS, queueing the cancellation SMS, changing the clinic)
// happens under the campaign's request lock, taken exclusively; every
// chunk an allocation run writes, and the creation of a run, take it
// shared. So a chunk either sees a cancellation and writes no live
// appointment for it, or commits first and the cancellation then finds
// and frees the appointment; and a change either lands before a run
// starts or is refused.
type RequestStore struct {
	Pool *pgxpool.Pool
}

var _ intake.Requests = (*RequestStore)(nil)

// requestLock is the campaign's request lock (see RequestStore); shared
// says which mode.
func requestLock(ctx context.Context, tx pgx.Tx, campaign string, shared bool) error {
	fn := "pg_advisory_xact_lock"
	if shared {
		fn = "pg_advisory_xact_lock_shared"
	}
	if _, err := tx.Exec(ctx, `SELECT `+fn+`(hashtextextended($1, 0))`, "prereg:requests:"+campaign); err != nil {
		return fmt.Errorf("request lock: %w", err)
	}
	return nil
}

// CancelKey is the outbox idempotency key of a registration's
// cancellation SMS: there is one version only.
func CancelKey(campaign string, registration int64) string {
	return campaign + ":r" + strconv.FormatInt(registration, 10) + ":cancel"
}

// Cancel records a cancellation of receipt asked with birth, then makes
// it take effect if the receipt is decided. Repeating it changes nothing.
func (s *RequestStore) Cancel(ctx context.Context, receipt string, birth time.Time) error {
	if err := s.refusePurged(ctx, receipt); err != nil {
		return err
	}
	// Recorded and committed before the decision is read, and dedupe
	// reads the requests after committing its decisions: of the two, the
	// later one always sees the other.
	if _, err := s.Pool.Exec(ctx, `INSERT INTO cancellations (receipt, birthdate) VALUES ($1, $2)
		ON CONFLICT (receipt, birthdate) DO NOTHING`, receipt, birth); err != nil {
		return fmt.Errorf("record cancellation: %w", err)
	}
	return s.Resolve(ctx, []string{receipt})
}

// Change records a change of the preferred clinic of receipt asked with
// birth and applies it if the receipt is decided. It returns
// intake.ErrUnknownClinic when no campaign (the receipt's, once decided)
// has the clinic, and intake.ErrAlreadyAllocated when the person's
// registration is already in a round (or cancelled).
func (s *RequestStore) Change(ctx context.Context, receipt string, birth time.Time, clinic string) error {
	if err := s.refusePurged(ctx, receipt); err != nil {
		return err
	}
	// The receipt's campaign once decided; before, any campaign's clinic
	// passes here and the change applies only if the decided campaign
	// has it (the registration's clinic must be one of its own).
	var campaign *string
	err := s.Pool.QueryRow(ctx, `SELECT campaign FROM decisions WHERE receipt = $1`, receipt).Scan(&campaign)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		campaign = nil
	case err != nil:
		return fmt.Errorf("change: read decision: %w", err)
	}
	var known bool
	if err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clinics WHERE id = $1 AND ($2::text IS NULL OR campaign = $2))`,
		clinic, campaign).Scan(&known); err != nil {
		return fmt.Errorf("change: read clinics: %w", err)
	}
	if !known {
		return intake.ErrUnknownClinic
	}
	if _, err := s.Pool.Exec(ctx, `INSERT INTO clinic_changes (receipt, birthdate, clinic) VALUES ($1, $2, $3)
		ON CONFLICT (receipt, birthdate) DO UPDATE SET clinic = excluded.clinic, requested_at = now(),
		    outcome = NULL, registration_id = NULL, resolved_at = NULL`, receipt, birth, clinic); err != nil {
		return fmt.Errorf("record clinic change: %w", err)
	}
	if err := s.Resolve(ctx, []string{receipt}); err != nil {
		return err
	}
	var outcome *string
	if err := s.Pool.QueryRow(ctx, `SELECT outcome FROM clinic_changes WHERE receipt = $1 AND birthdate = $2`, receipt, birth).Scan(&outcome); err != nil {
		return fmt.Errorf("change: read outcome: %w", err)
	}
	if outcome != nil && *outcome == "refused" {
		return intake.ErrAlreadyAllocated
	}
	return nil
}

// refusePurged returns intake.ErrPurged when receipt's campaign is
// purged: a request would record a birth date the purge removed. (A
// purge needs every submission decided, so a purged campaign's receipt
// has its decision.)
func (s *RequestStore) refusePurged(ctx context.Context, receipt string) error {
	var purged bool
	if err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM decisions d JOIN campaign_purges p ON p.campaign = d.campaign
		WHERE d.receipt = $1)`, receipt).Scan(&purged); err != nil {
		return fmt.Errorf("request: read purges: %w", err)
	}
	if purged {
		return intake.ErrPurged
	}
	return nil
}

// pendingRequest is a request whose receipt is decided, with what its
// decision says.
type pendingRequest struct {
	receipt      string
	birth        time.Time
	clinic       string // a change's
	campaign     string
	claimed      *time.Time
	kind         string
	review       *string
	registration *int64
}

// Resolve makes the pending requests of the given receipts take effect
// where their decision exists: dedupe calls it after committing a batch,
// Cancel and Change after recording one. It is idempotent, and cheap when
// none of the receipts has a request.
func (s *RequestStore) Resolve(ctx context.Context, receipts []string) error {
	if len(receipts) == 0 {
		return nil
	}
	// One look at the two small tables first: a batch of dedupe almost
	// never has a request, and then this is all it costs.
	rows, err := s.Pool.Query(ctx, `SELECT receipt FROM cancellations WHERE outcome IS NULL AND receipt = ANY($1)
		UNION SELECT receipt FROM clinic_changes WHERE outcome IS NULL AND receipt = ANY($1)`, receipts)
	if err != nil {
		return fmt.Errorf("read pending requests: %w", err)
	}
	receipts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read pending requests: %w", err)
	}
	if len(receipts) == 0 {
		return nil
	}
	const pending = `SELECT q.receipt, q.birthdate, %s, d.campaign, d.birthdate, d.kind, d.review, d.registration_id
		FROM %s q JOIN decisions d ON d.receipt = q.receipt
		WHERE q.receipt = ANY($1) AND q.outcome IS NULL`
	read := func(table, clinic string) ([]pendingRequest, error) {
		rows, err := s.Pool.Query(ctx, fmt.Sprintf(pending, clinic, table), receipts)
		if err != nil {
			return nil, fmt.Errorf("read pending %s: %w", table, err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pendingRequest, error) {
			var p pendingRequest
			err := r.Scan(&p.receipt, &p.birth, &p.clinic, &p.campaign, &p.claimed, &p.kind, &p.review, &p.registration)
			return p, err
		})
		if err != nil {
			return nil, fmt.Errorf("read pending %s: %w", table, err)
		}
		return out, nil
	}
	cancels, err := read("cancellations", "''")
	if err != nil {
		return err
	}
	for _, p := range cancels {
		if err := s.applyCancel(ctx, p); err != nil {
			return err
		}
	}
	changes, err := read("clinic_changes", "q.clinic")
	if err != nil {
		return err
	}
	for _, p := range changes {
		if err := s.applyChange(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// ResolveCampaign applies every pending request of the campaign whose
// decision exists: what a crash between recording a request and applying
// it left behind, and the requests of held submissions an operator has
// reviewed since. Every allocation run starts with it.
func (s *RequestStore) ResolveCampaign(ctx context.Context, campaign string) error {
	rows, err := s.Pool.Query(ctx, `SELECT q.receipt FROM cancellations q JOIN decisions d ON d.receipt = q.receipt
		WHERE q.outcome IS NULL AND d.campaign = $1
		UNION SELECT q.receipt FROM clinic_changes q JOIN decisions d ON d.receipt = q.receipt
		WHERE q.outcome IS NULL AND d.campaign = $1`, campaign)
	if err != nil {
		return fmt.Errorf("read pending requests: %w", err)
	}
	receipts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read pending requests: %w", err)
	}
	return s.Resolve(ctx, receipts)
}

// void reports whether a request's date is not its submission's.
func (p pendingRequest) void() bool { return p.claimed == nil || !p.claimed.Equal(p.birth) }

// waiting reports whether the decision is held for an operator's review:
// what a release will register is not known yet, so the request waits.
func (p pendingRequest) waiting() bool {
	return p.kind == string(prereg.KindHeld) && p.review == nil
}

// applyCancel makes one cancellation take effect: on a registration it
// frees a scheduled appointment's slot, fails its pending SMS and queues
// the one cancellation SMS, all in one transaction under the campaign's
// request lock.
func (s *RequestStore) applyCancel(ctx context.Context, p pendingRequest) error {
	if !p.void() && p.waiting() {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := requestLock(ctx, tx, p.campaign, false); err != nil {
			return err
		}
		if p.void() || p.registration == nil {
			outcome := "applied"
			if p.void() {
				outcome = "void"
			}
			_, err := tx.Exec(ctx, `UPDATE cancellations SET outcome = $3, campaign = $4, resolved_at = now()
				WHERE receipt = $1 AND birthdate = $2 AND outcome IS NULL`, p.receipt, p.birth, outcome, p.campaign)
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE cancellations SET outcome = 'applied', campaign = $3, registration_id = $4,
			    resolved_seq = nextval('cancellation_resolutions'), resolved_at = now()
			WHERE receipt = $1 AND birthdate = $2 AND outcome IS NULL`, p.receipt, p.birth, p.campaign, *p.registration)
		if err != nil || tag.RowsAffected() == 0 {
			return err // resolved meanwhile by another caller
		}
		return cancelRegistration(ctx, tx, p.campaign, *p.registration)
	})
	if err != nil {
		return fmt.Errorf("apply cancellation: %w", err)
	}
	return nil
}

// cancelRegistration frees the registration's scheduled appointment, if
// any, and queues its cancellation SMS. Called under the request lock.
func cancelRegistration(ctx context.Context, tx pgx.Tx, campaign string, registration int64) error {
	var appt int64
	var clinic string
	var day time.Time
	var band int16
	err := tx.QueryRow(ctx, `UPDATE appointments SET status = 'cancelled'
		WHERE registration_id = $1 AND status = 'scheduled' RETURNING id, clinic, day, band`, registration).
		Scan(&appt, &clinic, &day, &band)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("cancel appointment: %w", err)
	default:
		if _, err := tx.Exec(ctx, `UPDATE slots SET used = used - 1
			WHERE campaign = $1 AND clinic = $2 AND day = $3 AND band = $4`, campaign, clinic, day, band); err != nil {
			return fmt.Errorf("free slot: %w", err)
		}
		// A message no worker holds is failed here; one a worker leased
		// is failed by the worker, which sees the appointment cancelled.
		if _, err := tx.Exec(ctx, `UPDATE outbox SET state = 'failed', failed_at = now(), last_error = 'appointment cancelled'
			WHERE appointment_id = $1 AND state = 'pending' AND lease_owner IS NULL`, appt); err != nil {
			return fmt.Errorf("fail appointment sms: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (campaign, kind, registration_id, version, idempotency_key)
		VALUES ($1, 'cancellation', $2, 1, $3) ON CONFLICT DO NOTHING`, campaign, registration, CancelKey(campaign, registration)); err != nil {
		return fmt.Errorf("queue cancellation sms: %w", err)
	}
	return nil
}

// applyChange applies one change of preferred clinic to the person's
// registration, or refuses it when a round already holds the
// registration: it has an appointment, it is in a frozen lottery input,
// a real run of its campaign is under way, or it is cancelled; or when
// the clinic, asked for before the decision, is not the campaign's.
func (s *RequestStore) applyChange(ctx context.Context, p pendingRequest) error {
	if !p.void() && p.waiting() {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := requestLock(ctx, tx, p.campaign, false); err != nil {
			return err
		}
		outcome := "applied"
		switch {
		case p.void():
			outcome = "void"
		case p.registration == nil:
			// Rejected: nothing to change.
		default:
			var held bool
			err := tx.QueryRow(ctx, `SELECT
				    EXISTS (SELECT 1 FROM appointments WHERE registration_id = $2)
				 OR EXISTS (SELECT 1 FROM cancellations WHERE registration_id = $2)
				 OR EXISTS (SELECT 1 FROM allocation_runs WHERE campaign = $1 AND state = 'running' AND NOT dry_run)
				 OR EXISTS (SELECT 1 FROM lottery_rounds WHERE campaign = $1 AND $2 = ANY(input_ids))
				 OR NOT EXISTS (SELECT 1 FROM clinics WHERE campaign = $1 AND id = $3)`,
				p.campaign, *p.registration, p.clinic).Scan(&held)
			if err != nil {
				return fmt.Errorf("is the registration in a round: %w", err)
			}
			if held {
				outcome = "refused"
				break
			}
			if _, err := tx.Exec(ctx, `UPDATE registrations SET clinic = $2 WHERE id = $1`, *p.registration, p.clinic); err != nil {
				return fmt.Errorf("change clinic: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `UPDATE clinic_changes SET outcome = $3, registration_id = $4, resolved_at = now()
			WHERE receipt = $1 AND birthdate = $2 AND outcome IS NULL`, p.receipt, p.birth, outcome, p.registration)
		return err
	})
	if err != nil {
		return fmt.Errorf("apply clinic change: %w", err)
	}
	return nil
}

// cancelledAmong returns which of the registrations are cancelled.
func cancelledAmong(ctx context.Context, tx pgx.Tx, ids []int64) (map[int64]bool, error) {
	rows, err := tx.Query(ctx, `SELECT DISTINCT registration_id FROM cancellations WHERE registration_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read cancellations: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read cancellations: %w", err)
	}
	out := make(map[int64]bool, len(got))
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}
