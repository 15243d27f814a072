package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
)

// ColumnClass says what a column holds, in the terms of docs/DESIGN.md,
// "Data protection", and so what `prereg campaign purge` does with it.
type ColumnClass int

const (
	// Plain columns hold nothing about a person (counts, times, states,
	// clinics, windows, regions without a birth date): kept.
	Plain ColumnClass = iota
	// Pseudonymous columns name a submission, registration, appointment
	// or admin token by a receipt, an id or a keyed hash that only the
	// audit trail uses: kept, so the report and the round files still
	// render after a purge.
	Pseudonymous
	// Erased columns hold a personal value (a sealed phone, a birth date,
	// an address key, a diagnostic text that may quote one): set to NULL.
	Erased
	// Repseudonymised columns hold a keyed hash of a person's identity or
	// device, which links them to the same person in another campaign
	// under the same key: replaced by a hash under a random salt that the
	// purge makes inside its transaction and never keeps. Rows of one
	// person (or device) stay linked to each other within the campaign,
	// so the report's device figures are the same before and after, and
	// nothing links them to a keyed hash any more.
	Repseudonymised
)

// purgeTable is one table of the schema: how a campaign's rows are
// found, and the class of every column. A column nobody classified
// fails TestPurgeClassifiesEveryColumn.
type purgeTable struct {
	name string
	// scope selects a campaign's rows ($1 the campaign); "" for a table
	// whose personal columns (none) need no scope.
	scope   string
	columns map[string]ColumnClass
}

// purgeSchema is the one list of what each column of the schema holds.
// Tables are purged in this order, in one transaction.
var purgeSchema = []purgeTable{
	{name: "registrations", scope: "campaign = $1", columns: map[string]ColumnClass{
		"id": Pseudonymous, "campaign": Plain, "identity_key": Repseudonymised, "shard": Plain, "window_id": Plain,
		"birthdate": Erased, "region": Plain, "clinic": Plain, "earliest": Plain,
		"phone_kid": Erased, "phone_enc": Erased, "phone_verified": Plain, "first_receipt": Pseudonymous,
		"device_key": Repseudonymised, "received_at": Plain, "registered_at": Plain,
		"unassigned_reason": Plain, "unassigned_run_id": Plain,
	}},
	{name: "decisions", scope: "campaign = $1", columns: map[string]ColumnClass{
		"campaign": Plain, "receipt": Pseudonymous, "shard": Plain, "window_id": Plain, "kind": Plain, "reason": Plain,
		"provider": Plain, "identity_key": Repseudonymised, "registration_id": Pseudonymous, "matched_receipt": Pseudonymous,
		"device_key": Repseudonymised, "addr_key": Erased, "birthdate": Erased, "region": Plain, "clinic": Plain,
		"earliest": Plain, "phone_kid": Erased, "phone_enc": Erased, "phone_verified": Plain,
		"received_at": Plain, "decided_at": Plain, "review": Plain, "reviewed_by": Pseudonymous, "reviewed_at": Plain,
		"phone_key": Erased,
	}},
	// A phone's registrations, for the phone cap: the phone's keyed hash
	// links it to the same phone in another campaign, like an identity.
	{name: "phone_people", scope: "campaign = $1", columns: map[string]ColumnClass{
		"campaign": Plain, "phone_key": Repseudonymised, "identity_key": Repseudonymised, "first_receipt": Pseudonymous,
	}},
	{name: "device_people", scope: "campaign = $1", columns: map[string]ColumnClass{
		"campaign": Plain, "window_id": Plain, "device_key": Repseudonymised, "identity_key": Repseudonymised,
		"rank": Plain, "first_receipt": Pseudonymous,
	}},
	// An outbox error and a gateway's report are diagnostics written by
	// another system: they may quote the number they were about.
	{name: "outbox", scope: "campaign = $1", columns: map[string]ColumnClass{
		"id": Pseudonymous, "campaign": Plain, "appointment_id": Pseudonymous, "version": Plain,
		"idempotency_key": Pseudonymous, "state": Plain, "attempts": Plain, "next_attempt_at": Plain,
		"gateway_message_id": Pseudonymous, "last_error": Erased, "requested_by": Pseudonymous,
		"created_at": Plain, "sent_at": Plain, "delivered_at": Plain, "lease_owner": Plain,
		"leased_until":      Plain,
		"unconfirmed_sends": Plain, "message_type": Plain, "failed_at": Plain, "resend_reason": Erased,
		"kind": Plain, "registration_id": Pseudonymous,
	}},
	{name: "delivery_reports", scope: "outbox_id IN (SELECT id FROM outbox WHERE campaign = $1)", columns: map[string]ColumnClass{
		"id": Pseudonymous, "outbox_id": Pseudonymous, "gateway_message_id": Pseudonymous, "status": Plain,
		"error": Erased, "reported_at": Plain, "received_at": Plain,
	}},
	// A verified-stream dead letter keeps the outcome (a sealed phone,
	// keyed hashes, a birth date); the rest of the letter is kept.
	{name: "dead_letters", scope: `(msg_id IN (SELECT receipt FROM decisions WHERE campaign = $1)
		OR position(convert_to('"campaign":' || to_json($1::text)::text, 'UTF8') IN payload) > 0)`, columns: map[string]ColumnClass{
		"id": Pseudonymous, "stream": Plain, "subject": Plain, "stream_seq": Plain, "msg_id": Pseudonymous,
		"reason": Plain, "detail": Plain, "payload": Erased, "payload_sha256": Pseudonymous, "payload_len": Plain,
		"first_seen_at": Plain, "redriven_at": Plain,
	}},
	{name: "appointments", columns: map[string]ColumnClass{
		"id": Pseudonymous, "campaign": Plain, "registration_id": Pseudonymous, "clinic": Plain, "day": Plain,
		"band": Plain, "run_id": Plain, "status": Plain, "created_at": Plain,
	}},
	{name: "campaigns", columns: map[string]ColumnClass{
		"id": Plain, "name": Plain, "spec": Plain, "shards": Plain, "device_cap": Plain, "loaded_at": Plain, "hmac_key": Plain,
	}},
	{name: "windows", columns: map[string]ColumnClass{
		"campaign": Plain, "id": Plain, "opens": Plain, "closes": Plain, "digits": Plain, "catch_up": Plain,
	}},
	{name: "clinics", columns: map[string]ColumnClass{
		"campaign": Plain, "id": Plain, "name": Plain, "region": Plain, "lat": Plain, "lng": Plain, "address": Plain,
	}},
	{name: "slots", columns: map[string]ColumnClass{
		"campaign": Plain, "clinic": Plain, "day": Plain, "band": Plain, "capacity": Plain, "used": Plain,
	}},
	{name: "allocation_runs", columns: map[string]ColumnClass{
		"id": Plain, "campaign": Plain, "window_id": Plain, "policy": Plain, "dry_run": Plain, "state": Plain,
		"total": Plain, "done": Plain, "result": Plain, "error": Plain, "started_at": Plain, "finished_at": Plain,
		"bound": Plain, "seed_hash": Plain, "cancel_bound": Plain,
	}},
	// A citizen's change or cancellation keeps the birth date it was asked
	// with, which with the receipt's region is personal.
	{name: "cancellations", scope: "campaign = $1 OR receipt IN (SELECT receipt FROM decisions WHERE campaign = $1)", columns: map[string]ColumnClass{
		"receipt": Pseudonymous, "birthdate": Erased, "requested_at": Plain, "outcome": Plain, "campaign": Plain,
		"registration_id": Pseudonymous, "resolved_seq": Plain, "resolved_at": Plain,
	}},
	{name: "clinic_changes", scope: "receipt IN (SELECT receipt FROM decisions WHERE campaign = $1)", columns: map[string]ColumnClass{
		"receipt": Pseudonymous, "birthdate": Erased, "clinic": Plain, "requested_at": Plain, "outcome": Plain,
		"registration_id": Pseudonymous, "resolved_at": Plain,
	}},
	// The round files: registration ids and the seed, published.
	{name: "lottery_seeds", columns: map[string]ColumnClass{
		"campaign": Plain, "window_id": Plain, "seed": Plain, "seed_hash": Plain, "committed_at": Plain, "revealed_at": Plain,
	}},
	{name: "lottery_rounds", columns: map[string]ColumnClass{
		"campaign": Plain, "window_id": Plain, "input_ids": Pseudonymous, "input_hash": Plain, "frozen_at": Plain,
		"run_id": Plain, "max_distance_km": Plain, "inventory": Plain,
	}},
	{name: "dedupe_counters", columns: map[string]ColumnClass{
		"campaign": Plain, "shard": Plain, "maybe_seen": Plain, "false_positives": Plain,
	}},
	{name: "admin_audit", columns: map[string]ColumnClass{
		"id": Plain, "at": Plain, "role": Plain, "token_id": Pseudonymous, "action": Plain, "target": Pseudonymous, "outcome": Plain,
	}},
	{name: "intake_pauses", columns: map[string]ColumnClass{
		"campaign": Plain, "paused_at": Plain, "reopens_at": Plain, "paused_by": Pseudonymous,
	}},
	{name: "campaign_purges", columns: map[string]ColumnClass{
		"campaign": Plain, "purged_at": Plain, "removed": Plain, "early_reason": Plain,
	}},
	{name: "schema_migrations", columns: map[string]ColumnClass{
		"version": Plain, "name": Plain, "applied_at": Plain, "checksum": Plain,
	}},
}

// PurgeClasses returns the class of every column the purge knows, by
// table and column, for the test that holds it to the schema.
func PurgeClasses() map[string]map[string]ColumnClass {
	out := make(map[string]map[string]ColumnClass, len(purgeSchema))
	for _, t := range purgeSchema {
		cols := make(map[string]ColumnClass, len(t.columns))
		for c, k := range t.columns {
			cols[c] = k
		}
		out[t.name] = cols
	}
	return out
}

// pseudonymPrefix starts every value the purge re-pseudonymised: keyed
// hashes are lower-case hex, so a value that starts with it was purged
// before, and a second purge leaves it alone.
const pseudonymPrefix = "p"

// personal returns the table's columns to change, sorted, and the SQL of
// the change and of "this row still holds a personal value".
func (t purgeTable) personal() (cols []string, set, pending string) {
	for c, k := range t.columns {
		if k == Erased || k == Repseudonymised {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		return nil, "", ""
	}
	slices.Sort(cols)
	var sets, conds []string
	for _, c := range cols {
		if t.columns[c] == Erased {
			sets = append(sets, c+" = NULL")
			conds = append(conds, c+" IS NOT NULL")
			continue
		}
		sets = append(sets, fmt.Sprintf("%s = '%s' || left(encode(sha256(convert_to(purge_salt.salt || %s, 'UTF8')), 'hex'), 63)", c, pseudonymPrefix, c))
		conds = append(conds, fmt.Sprintf("coalesce(left(%s, 1) <> '%s', false)", c, pseudonymPrefix))
	}
	return cols, strings.Join(sets, ", "), "(" + strings.Join(conds, " OR ") + ")"
}

// PurgeStore removes a finished campaign's personal data (`prereg
// campaign purge`), keeping the pseudonymous audit trail.
type PurgeStore struct {
	Pool *pgxpool.Pool
}

// PurgeOptions are a purge's limits.
type PurgeOptions struct {
	// Retention is how long after the campaign's last activity (its last
	// window's close, its last appointment's day, its last decision) the
	// personal data must be kept (config's PREREG_PURGE_RETENTION).
	Retention time.Duration
	// DryRun counts what would change and changes nothing; when the
	// purge would be refused it still counts, and returns the refusal
	// with the counts.
	DryRun bool
	// Early, when set, is why the campaign is purged before its retention
	// period ends (a cancelled campaign, a rehearsal, a data-protection
	// order): it lifts the retention rule and no other, and its
	// appointments still to come are cancelled, since nobody could be
	// told of them or checked against them any more. A window not yet
	// closed refuses it unless the campaign's intake is paused past its
	// close, as the retention rule would have. At most MaxEarlyReason
	// bytes; kept in campaign_purges.
	Early string
	Now   time.Time
	// Progress, when set, is called after each table.
	Progress func(PurgeCount)
}

// PurgeReportWait is how long a message the gateway accepted may wait for
// its delivery report before the purge stops waiting for it: a report
// later than that is not coming.
const PurgeReportWait = 48 * time.Hour

// MaxEarlyReason is the longest reason an early purge keeps.
const MaxEarlyReason = 200

// PurgeCount is what a purge changed (or, dry, would change) in a table.
type PurgeCount struct {
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
	Rows    int64    `json:"rows"`
}

// PurgeResult is a purge's outcome.
type PurgeResult struct {
	Campaign string       `json:"campaign"`
	DryRun   bool         `json:"dry_run"`
	Tables   []PurgeCount `json:"tables"`
	// PurgedAt is when the campaign was first purged (nil: never, or a
	// dry run of a campaign not yet purged).
	PurgedAt *time.Time `json:"purged_at,omitempty"`
	// LastActivity is the time the retention period runs from.
	LastActivity time.Time `json:"last_activity"`
	// Early is the reason of an early purge ("" for one after the
	// retention period).
	Early string `json:"early_reason,omitempty"`
	// Cancelled counts the appointments still to come that the purge
	// cancelled (a dry run: would cancel); only an early purge has any.
	Cancelled int64 `json:"cancelled_appointments"`
}

// Rows is the total of rows changed.
func (r PurgeResult) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Rows
	}
	return n
}

// PurgeRefusedError lists why a campaign cannot be purged yet. It is a
// prereg.ErrConflict.
type PurgeRefusedError struct {
	Reasons []string
}

func (e *PurgeRefusedError) Error() string {
	return "purge refused: " + strings.Join(e.Reasons, "; ")
}

// Unwrap makes a refusal a conflict.
func (e *PurgeRefusedError) Unwrap() error { return prereg.ErrConflict }

// Purge removes the personal values of a campaign: phones, birth dates,
// address keys, diagnostics that may quote a number, and the keyed
// hashes of identities and devices (re-pseudonymised). It refuses while
// an SMS is still to be sent or its report awaited, a held submission
// awaits review, an allocation runs, or the retention period has not run
// out (unless opt.Early says why it may not wait). All in one
// transaction: it is done entirely or not at all, and a second run finds
// nothing left to do.
func (s *PurgeStore) Purge(ctx context.Context, campaign string, opt PurgeOptions) (PurgeResult, error) {
	res := PurgeResult{Campaign: campaign, DryRun: opt.DryRun, Tables: []PurgeCount{}, Early: opt.Early}
	if opt.Early != "" && (strings.TrimSpace(opt.Early) == "" || len(opt.Early) > MaxEarlyReason) {
		return res, fmt.Errorf("purge campaign: an early purge's reason must be 1 to %d bytes, not blank", MaxEarlyReason)
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// One purge of a campaign at a time; the lock ends with the
		// transaction.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('prereg purge ' || $1))`, campaign); err != nil {
			return err
		}
		// A dry run counts even when the purge would be refused, and
		// returns the refusal after the counts.
		refusal := purgeAllowed(ctx, tx, campaign, opt, &res)
		var refused *PurgeRefusedError
		if refusal != nil && !(opt.DryRun && errors.As(refusal, &refused)) {
			return refusal
		}
		if !opt.DryRun {
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE purge_salt ON COMMIT DROP AS
				SELECT gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text AS salt`); err != nil {
				return fmt.Errorf("salt: %w", err)
			}
		}
		for _, t := range purgeSchema {
			cols, set, pending := t.personal()
			if cols == nil {
				continue
			}
			c := PurgeCount{Table: t.name, Columns: cols}
			if opt.DryRun {
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+t.name+` WHERE `+t.scope+` AND `+pending, campaign).Scan(&c.Rows); err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
			} else {
				tag, err := tx.Exec(ctx, `UPDATE `+t.name+` SET `+set+` FROM purge_salt WHERE `+t.scope+` AND `+pending, campaign)
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				c.Rows = tag.RowsAffected()
			}
			res.Tables = append(res.Tables, c)
			if opt.Progress != nil {
				opt.Progress(c)
			}
		}
		cancelled, err := cancelToCome(ctx, tx, campaign, opt)
		if err != nil {
			return fmt.Errorf("cancel appointments still to come: %w", err)
		}
		res.Cancelled = cancelled
		if opt.DryRun {
			return refusal
		}
		removed := map[string]int64{}
		for _, c := range res.Tables {
			removed[c.Table] = c.Rows
		}
		if cancelled > 0 {
			removed["appointments"] = cancelled
		}
		var at time.Time
		err = tx.QueryRow(ctx, `INSERT INTO campaign_purges (campaign, purged_at, removed, early_reason) VALUES ($1, $2, $3, nullif($4, ''))
			ON CONFLICT (campaign) DO UPDATE SET campaign = EXCLUDED.campaign
			RETURNING purged_at`, campaign, opt.Now, removed, opt.Early).Scan(&at)
		if err != nil {
			return fmt.Errorf("record: %w", err)
		}
		res.PurgedAt = &at
		return nil
	})
	if err != nil {
		var refused *PurgeRefusedError
		if errors.Is(err, prereg.ErrCampaignNotFound) || errors.As(err, &refused) {
			return res, err
		}
		return res, fmt.Errorf("purge campaign: %w", err)
	}
	return res, nil
}

// purgeAllowed checks the campaign exists and nothing still needs its
// personal data, and sets res.LastActivity and res.PurgedAt.
func purgeAllowed(ctx context.Context, tx pgx.Tx, campaign string, opt PurgeOptions, res *PurgeResult) error {
	var (
		exists                      bool
		pending, awaiting, held     int64
		running                     int64
		lastClose, lastDay, lastDec *time.Time
	)
	err := tx.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM campaigns WHERE id = $1),
			(SELECT count(*) FROM outbox WHERE campaign = $1 AND state = 'pending'),
			(SELECT count(*) FROM outbox WHERE campaign = $1 AND state = 'sent' AND coalesce(sent_at, created_at) > $2),
			(SELECT count(*) FROM decisions WHERE campaign = $1 AND kind = 'held' AND review IS NULL),
			(SELECT count(*) FROM allocation_runs WHERE campaign = $1 AND state = 'running'),
			(SELECT max(closes) FROM windows WHERE campaign = $1),
			(SELECT max(day + 1)::timestamptz FROM appointments WHERE campaign = $1),
			(SELECT max(decided_at) FROM decisions WHERE campaign = $1),
			(SELECT purged_at FROM campaign_purges WHERE campaign = $1)`,
		campaign, opt.Now.Add(-PurgeReportWait)).Scan(&exists, &pending, &awaiting, &held, &running, &lastClose, &lastDay, &lastDec, &res.PurgedAt)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if !exists {
		return prereg.ErrCampaignNotFound
	}
	for _, t := range []*time.Time{lastClose, lastDay, lastDec} {
		if t != nil && t.After(res.LastActivity) {
			res.LastActivity = t.UTC()
		}
	}
	var reasons []string
	if pending > 0 {
		reasons = append(reasons, fmt.Sprintf("%d SMS still to be sent (prereg outbox status)", pending))
	}
	if awaiting > 0 {
		reasons = append(reasons, fmt.Sprintf("%d SMS sent less than %s ago still await their delivery report", awaiting, PurgeReportWait))
	}
	if held > 0 {
		reasons = append(reasons, fmt.Sprintf("%d held submissions still await review (release or reject them)", held))
	}
	if running > 0 {
		reasons = append(reasons, fmt.Sprintf("%d allocation runs still running", running))
	}
	if opt.Early != "" {
		// The retention rule covers a window not yet closed; an early
		// purge must not leave one taking submissions, now or once it
		// opens, that nothing can allocate.
		var open int64
		var until *time.Time
		err := tx.QueryRow(ctx, `SELECT count(*), max(w.closes) FROM windows w
			WHERE w.campaign = $1 AND w.closes > $2
			  AND NOT EXISTS (SELECT 1 FROM intake_pauses p WHERE p.campaign = w.campaign
			      AND (p.reopens_at IS NULL OR p.reopens_at >= w.closes))`, campaign, opt.Now).Scan(&open, &until)
		if err != nil {
			return fmt.Errorf("check open windows: %w", err)
		}
		if open > 0 {
			reasons = append(reasons, fmt.Sprintf("%d windows not closed yet take submissions (the last until %s): pause the campaign's intake first (prereg campaign pause)",
				open, until.UTC().Format(time.RFC3339)))
		}
	}
	if until := res.LastActivity.Add(opt.Retention); opt.Now.Before(until) && opt.Early == "" {
		reasons = append(reasons, fmt.Sprintf("within the retention period (PREREG_PURGE_RETENTION %s after the last activity at %s): purge from %s",
			opt.Retention, res.LastActivity.Format(time.RFC3339), until.UTC().Format(time.RFC3339)))
	}
	if len(reasons) > 0 {
		return &PurgeRefusedError{Reasons: reasons}
	}
	return nil
}

// cancelToCome cancels the campaign's scheduled appointments whose day
// has not passed (the day that ends the last activity, as purgeAllowed
// counts it) and gives their slots back; a dry run only counts them. A
// purge after the retention period finds none: its last appointment day
// is behind it. An early purge leaves nobody to notify of an appointment
// or to check at the clinic, so the appointment is void; the citizen's
// lookup and the receipt view then say cancelled. No cancellation SMS is
// queued: there is no phone left to send it to.
func cancelToCome(ctx context.Context, tx pgx.Tx, campaign string, opt PurgeOptions) (int64, error) {
	const toCome = `campaign = $1 AND status = 'scheduled' AND (day + 1)::timestamptz > $2`
	var n int64
	if opt.DryRun {
		err := tx.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE `+toCome, campaign, opt.Now).Scan(&n)
		return n, err
	}
	err := tx.QueryRow(ctx, `WITH cancelled AS (
			UPDATE appointments SET status = 'cancelled' WHERE `+toCome+` RETURNING clinic, day, band
		), freed AS (
			SELECT clinic, day, band, count(*) AS n FROM cancelled GROUP BY clinic, day, band
		), slots_freed AS (
			UPDATE slots s SET used = s.used - f.n FROM freed f
			WHERE s.campaign = $1 AND s.clinic = f.clinic AND s.day = f.day AND s.band = f.band
		)
		SELECT coalesce(sum(n), 0) FROM freed`, campaign, opt.Now).Scan(&n)
	return n, err
}
