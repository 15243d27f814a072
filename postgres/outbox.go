package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/notify"
)

// OutboxStore is the SMS outbox behind notify's interfaces (Outbox,
// Reports, Resender): leased claims with FOR UPDATE SKIP LOCKED, outcomes
// recorded in one statement per batch, delivery reports and resends.
type OutboxStore struct {
	Pool *pgxpool.Pool
}

var (
	_ notify.Outbox   = (*OutboxStore)(nil)
	_ notify.Reports  = (*OutboxStore)(nil)
	_ notify.Resender = (*OutboxStore)(nil)
)

// Claim leases up to limit due pending rows to owner until leaseUntil. A
// row that still carries another owner's lease had an unfinished attempt:
// it comes back Reclaimed and its unconfirmed_sends count goes up. A
// cancellation's message names its registration, not an appointment.
//
// The lease (lease_owner, leased_until) is in no index and leaves
// next_attempt_at, the due index's key, where it was: the update is HOT,
// writing no index entry, when the row's page has room for it (the
// table's fillfactor keeps it). A leased row stays in the due index,
// passed over by the next claims until its outcome is recorded.
//
// The order is the due index's alone (rows due at the same instant come
// in the index's order), so that a claim reads the index from its start
// and stops at limit rows: a second key the index lacks (the id) had
// every claim read and sort all the pending rows.
func (s *OutboxStore) Claim(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]notify.Message, error) {
	rows, err := s.Pool.Query(ctx, `
		WITH due AS (
			SELECT id, lease_owner, appointment_id, registration_id FROM outbox
			WHERE state = 'pending' AND next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until <= $1)
			ORDER BY next_attempt_at
			LIMIT $4
			FOR UPDATE SKIP LOCKED),
		what AS (
			SELECT due.id, due.lease_owner, r.phone_kid, r.phone_enc, coalesce(c.name, '') AS clinic,
				a.day, coalesce(a.band, 0) AS band, coalesce(a.status = 'cancelled', false) AS cancelled
			FROM due
			LEFT JOIN appointments a ON a.id = due.appointment_id
			JOIN registrations r ON r.id = coalesce(a.registration_id, due.registration_id)
			LEFT JOIN clinics c ON c.campaign = a.campaign AND c.id = a.clinic
			WHERE due.appointment_id IS NULL OR c.id IS NOT NULL)
		UPDATE outbox o SET lease_owner = $2, leased_until = $3,
			unconfirmed_sends = o.unconfirmed_sends + (what.lease_owner IS NOT NULL)::int
		FROM what
		WHERE o.id = what.id
		RETURNING o.id, o.campaign, coalesce(o.appointment_id, 0), o.version, o.idempotency_key, o.attempts,
			what.lease_owner IS NOT NULL, what.phone_kid, what.phone_enc, what.clinic, what.day, what.band, what.cancelled,
			o.kind = 'cancellation'`,
		now, owner, leaseUntil, limit)
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (notify.Message, error) {
		var m notify.Message
		var band int16
		var day *time.Time
		err := r.Scan(&m.ID, &m.Campaign, &m.Appointment, &m.Version, &m.Key, &m.Attempts,
			&m.Reclaimed, &m.Phone.KeyID, &m.Phone.Data, &m.Where.Clinic, &day, &band, &m.Cancelled, &m.Cancellation)
		m.Where.Band = int(band)
		if day != nil {
			m.Where.Day = *day
		}
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	return msgs, nil
}

// Complete records a batch of outcomes in one statement. Rows whose lease
// owner changed meanwhile are left to their new owner; a row a delivery
// report already moved on keeps its state.
func (s *OutboxStore) Complete(ctx context.Context, owner string, now time.Time, results []notify.Result) error {
	if len(results) == 0 {
		return nil
	}
	n := len(results)
	ids, outcomes := make([]int64, n), make([]string, n)
	mids, types, errs := make([]*string, n), make([]*string, n), make([]*string, n)
	next := make([]time.Time, n)
	unanswered := make([]bool, n)
	for i, r := range results {
		ids[i], outcomes[i], next[i], unanswered[i] = r.ID, outcomeName(r.Outcome), r.NextAttempt, r.Unanswered
		if next[i].IsZero() {
			next[i] = now
		}
		if r.MessageID != "" {
			mids[i] = &r.MessageID
		}
		if r.Type != "" {
			t := string(r.Type)
			types[i] = &t
		}
		if r.Error != "" {
			e := truncate(r.Error, 500)
			errs[i] = &e
		}
	}
	_, err := s.Pool.Exec(ctx, `
		UPDATE outbox o SET
			state = CASE WHEN o.state <> 'pending' THEN o.state
				WHEN v.outcome = 'sent' THEN 'sent' WHEN v.outcome = 'failed' THEN 'failed' ELSE 'pending' END,
			attempts = o.attempts + (v.outcome <> 'released')::int,
			next_attempt_at = CASE WHEN v.outcome IN ('retry', 'released') THEN v.next ELSE o.next_attempt_at END,
			sent_at = CASE WHEN v.outcome = 'sent' THEN coalesce(o.sent_at, $2) ELSE o.sent_at END,
			gateway_message_id = CASE WHEN v.outcome = 'sent' THEN coalesce(o.gateway_message_id, v.mid) ELSE o.gateway_message_id END,
			message_type = coalesce(v.typ, o.message_type),
			failed_at = CASE WHEN v.outcome = 'failed' AND o.state = 'pending' THEN $2 ELSE o.failed_at END,
			last_error = CASE WHEN v.outcome = 'sent' THEN NULL ELSE v.err END,
			unconfirmed_sends = o.unconfirmed_sends + v.unanswered::int,
			lease_owner = NULL, leased_until = NULL
		FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::bool[])
			AS v(id, outcome, mid, typ, err, next, unanswered)
		WHERE o.id = v.id AND o.lease_owner = $1`,
		owner, now, ids, outcomes, mids, types, errs, next, unanswered)
	if err != nil {
		return fmt.Errorf("complete outbox: %w", err)
	}
	return nil
}

func outcomeName(o notify.Outcome) string {
	switch o {
	case notify.OutcomeSent:
		return "sent"
	case notify.OutcomeRetry:
		return "retry"
	case notify.OutcomeFailed:
		return "failed"
	default:
		return "released"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Pending counts the messages still to send.
func (s *OutboxStore) Pending(ctx context.Context) (int, error) {
	var n int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE state = 'pending'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending outbox: %w", err)
	}
	return n, nil
}

// OutboxCounts summarise the outbox of a campaign (all campaigns when
// empty).
type OutboxCounts struct {
	Pending   int `json:"pending"`
	Sent      int `json:"sent"`
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
	Resends   int `json:"resends"` // versions an operator asked for
	// UnconfirmedSends counts attempts that may have reached the gateway
	// without the worker learning of it (a lease reclaimed after a crash,
	// a call whose answer never came): an upper bound of the duplicates a
	// gateway ignoring idempotency keys can have delivered.
	UnconfirmedSends int `json:"unconfirmed_sends"`
}

// Counts summarises the outbox.
func (s *OutboxStore) Counts(ctx context.Context, campaign string) (OutboxCounts, error) {
	var c OutboxCounts
	err := s.Pool.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'sent'),
			count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'failed'),
			count(*) FILTER (WHERE requested_by IS NOT NULL), coalesce(sum(unconfirmed_sends), 0)
		FROM outbox WHERE $1 = '' OR campaign = $1`, campaign).
		Scan(&c.Pending, &c.Sent, &c.Delivered, &c.Failed, &c.Resends, &c.UnconfirmedSends)
	if err != nil {
		return c, fmt.Errorf("count outbox: %w", err)
	}
	return c, nil
}

// RecordReports stores each delivery report once per (message, status)
// and moves its message to delivered or failed, in one statement. A
// message still pending (its mark-sent not written yet) moves too: the
// gateway had taken it. Of two reports of one batch for the same message,
// the earlier moves it, as if they had come one after the other.
//
// Concurrent batches need no lock of their own: the unique index on
// (gateway_message_id, status) makes a report new in exactly one of them,
// and the update of a message another batch is updating waits for it and
// then finds the message moved. A deadlock between two batches that
// update the same messages in different orders is retried.
func (s *OutboxStore) RecordReports(ctx context.Context, rs []notify.Report) ([]notify.ReportResult, error) {
	n := len(rs)
	if n == 0 {
		return nil, nil
	}
	keys, mids, statuses := make([]string, n), make([]string, n), make([]string, n)
	errs, failures := make([]*string, n), make([]string, n)
	ats := make([]time.Time, n)
	for i, r := range rs {
		keys[i], mids[i], statuses[i], ats[i] = r.Key, r.MessageID, r.Status, r.At
		if r.Error != "" {
			e := truncate(r.Error, 500)
			errs[i] = &e
		}
		failures[i] = "report: " + truncate(r.Error, 400)
	}
	res := make([]notify.ReportResult, n)
	for attempt := 1; ; attempt++ {
		err := s.recordReports(ctx, keys, mids, statuses, errs, failures, ats, res)
		if err == nil {
			return res, nil
		}
		if attempt == 3 || !isRetryable(err) {
			return nil, fmt.Errorf("record delivery reports: %w", err)
		}
	}
}

func (s *OutboxStore) recordReports(ctx context.Context, keys, mids, statuses []string, errs []*string, failures []string, ats []time.Time, res []notify.ReportResult) error {
	rows, err := s.Pool.Query(ctx, `
		WITH v AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
				WITH ORDINALITY AS v(key, mid, status, err, failure, at, i)),
		o AS (
			SELECT v.*, o.id FROM v JOIN outbox o ON o.idempotency_key = v.key),
		ins AS (
			INSERT INTO delivery_reports (outbox_id, gateway_message_id, status, error, reported_at)
			SELECT id, mid, status, err, at FROM o ORDER BY i
			ON CONFLICT (gateway_message_id, status) DO NOTHING
			RETURNING outbox_id, gateway_message_id, status),
		first AS (
			SELECT DISTINCT ON (o.id) o.* FROM o
			JOIN ins ON ins.outbox_id = o.id AND ins.gateway_message_id = o.mid AND ins.status = o.status
			ORDER BY o.id, o.i),
		moved AS (
			UPDATE outbox SET
				state = CASE WHEN f.status = 'delivered' THEN 'delivered' ELSE 'failed' END,
				delivered_at = CASE WHEN f.status = 'delivered' THEN coalesce(outbox.delivered_at, f.at) ELSE outbox.delivered_at END,
				sent_at = CASE WHEN f.status = 'delivered' THEN coalesce(outbox.sent_at, f.at) ELSE outbox.sent_at END,
				failed_at = CASE WHEN f.status = 'delivered' THEN outbox.failed_at ELSE f.at END,
				last_error = CASE WHEN f.status = 'delivered' THEN outbox.last_error ELSE f.failure END,
				gateway_message_id = coalesce(outbox.gateway_message_id, f.mid)
			FROM first f
			WHERE outbox.id = f.id AND outbox.state IN ('pending', 'sent'))
		SELECT v.i, o.id IS NOT NULL, ins.outbox_id IS NOT NULL
		FROM v
		LEFT JOIN o ON o.i = v.i
		LEFT JOIN ins ON ins.outbox_id = o.id AND ins.gateway_message_id = o.mid AND ins.status = o.status`,
		keys, mids, statuses, errs, failures, ats)
	if err != nil {
		return err
	}
	var i int64
	var found, recorded bool
	seen := 0
	_, err = pgx.ForEachRow(rows, []any{&i, &found, &recorded}, func() error {
		if i < 1 || int(i) > len(res) {
			return fmt.Errorf("result for report %d of %d", i, len(res))
		}
		switch {
		case !found:
			res[i-1] = notify.ReportUnknown
		case recorded:
			res[i-1] = notify.ReportRecorded
		default:
			res[i-1] = notify.ReportSeen
		}
		seen++
		return nil
	})
	if err != nil {
		return err
	}
	if seen != len(res) {
		return fmt.Errorf("%d results for %d reports", seen, len(res))
	}
	return nil
}

// Resend adds the next version of an appointment's message, recording who
// asked and why. It refuses (prereg.ErrConflict) when the appointment is
// cancelled or its latest version is still waiting to be sent.
func (s *OutboxStore) Resend(ctx context.Context, req notify.ResendRequest) (notify.Resent, error) {
	res := notify.Resent{Appointment: req.Appointment}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var campaign, status string
		err := tx.QueryRow(ctx, `SELECT campaign, status FROM appointments WHERE id = $1 FOR UPDATE`, req.Appointment).Scan(&campaign, &status)
		if errors.Is(err, pgx.ErrNoRows) {
			return prereg.ErrNotFound
		}
		if err != nil {
			return err
		}
		if status == "cancelled" {
			return notify.ConflictError("appointment cancelled")
		}
		var purged bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM campaign_purges WHERE campaign = $1)`, campaign).Scan(&purged); err != nil {
			return err
		}
		if purged {
			return notify.ConflictError("campaign purged: no phone left to send to")
		}
		var version int
		var state string
		err = tx.QueryRow(ctx, `SELECT version, state FROM outbox WHERE appointment_id = $1 ORDER BY version DESC LIMIT 1`, req.Appointment).Scan(&version, &state)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case state == "pending":
			return notify.ConflictError(fmt.Sprintf("version %d is still waiting to be sent", version))
		}
		res.Version = version + 1
		res.Key = prereg.OutboxKey(campaign, req.Appointment, res.Version)
		var reason *string
		if req.Reason != "" {
			r := truncate(req.Reason, 500)
			reason = &r
		}
		return tx.QueryRow(ctx, `INSERT INTO outbox (campaign, appointment_id, version, idempotency_key, requested_by, resend_reason)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			campaign, req.Appointment, res.Version, res.Key, cmp.Or(req.RequestedBy, "unknown"), reason).Scan(&res.OutboxID)
	})
	if err != nil {
		return notify.Resent{}, fmt.Errorf("resend appointment %d: %w", req.Appointment, err)
	}
	return res, nil
}

// FailedMessage is a message that failed permanently: what an operator
// looks at before a resend. It names the appointment, never the phone.
type FailedMessage struct {
	OutboxID    int64     `json:"outbox_id"`
	Appointment int64     `json:"appointment"`
	Version     int       `json:"version"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error"`
	FailedAt    time.Time `json:"failed_at"`
}

// Failed lists up to limit permanently failed messages, latest first,
// of a campaign (all campaigns when empty).
func (s *OutboxStore) Failed(ctx context.Context, campaign string, limit int) ([]FailedMessage, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, coalesce(appointment_id, 0), version, attempts, coalesce(last_error, ''), coalesce(failed_at, created_at)
		FROM outbox WHERE state = 'failed' AND ($1 = '' OR campaign = $1)
		ORDER BY failed_at DESC NULLS LAST, id DESC LIMIT $2`, campaign, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FailedMessage, error) {
		var f FailedMessage
		err := r.Scan(&f.OutboxID, &f.Appointment, &f.Version, &f.Attempts, &f.LastError, &f.FailedAt)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("list failed messages: %w", err)
	}
	return out, nil
}
