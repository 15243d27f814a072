package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

// DedupeStore is the PostgreSQL store behind dedupe.Store: registrations,
// decisions and the device counts every dedupe worker shares.
type DedupeStore struct {
	Pool *pgxpool.Pool
}

var _ dedupe.Store = (*DedupeStore)(nil)

// Decide runs fn on one connection, retrying it (up to three times) when
// PostgreSQL aborts it for a deadlock or a serialization failure (two
// workers locking the same phones in a different order), or when its
// decisions turn out to be a replay (Record). Statements whose answer
// the batch does not wait for travel with the next round trip: BEGIN
// with the first read, the writes that end the batch with its COMMIT.
func (s *DedupeStore) Decide(ctx context.Context, fn func(dedupe.Tx) error) error {
	var err error
	replay := false
	for attempt := 0; attempt < 3; attempt++ {
		var dt *dedupeTx
		dt, err = s.decideOnce(ctx, fn, replay)
		if err == nil {
			for _, f := range dt.afterCommit {
				f()
			}
			return nil
		}
		if errors.Is(err, errReplay) {
			replay = true
			continue
		}
		if !isRetryable(err) {
			break
		}
	}
	return fmt.Errorf("decide batch: %w", err)
}

// decideOnce runs fn once on a connection of its own and commits. A
// failure rolls back what is open; a connection left in an unknown state
// is closed by the pool on release.
func (s *DedupeStore) decideOnce(ctx context.Context, fn func(dedupe.Tx) error, replay bool) (*dedupeTx, error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	dt := &dedupeTx{conn: conn.Conn(), replay: replay}
	dt.queue("begin", "BEGIN")
	err = fn(dt)
	if err == nil {
		err = dt.commit(ctx)
	}
	if err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		return nil, err
	}
	return dt, nil
}

// errReplay is Record finding decisions already recorded: the batch runs
// again, recording through the staging table.
var errReplay = errors.New("decisions already recorded")

func isRetryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// RegisteredKeys streams the identity keys of a campaign's registrations
// with COPY TO, the fastest way out of PostgreSQL: the Bloom filters'
// rebuild at start.
func (s *DedupeStore) RegisteredKeys(ctx context.Context, campaign string, shards []int, fn func(string)) error {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("registered keys: acquire: %w", err)
	}
	defer conn.Release()
	q := "COPY (SELECT identity_key FROM registrations WHERE campaign = " + quoteLiteral(campaign)
	if shards != nil {
		parts := make([]string, len(shards))
		for i, sh := range shards {
			parts[i] = strconv.Itoa(sh)
		}
		q += " AND shard IN (" + strings.Join(append(parts, "-1"), ",") + ")"
	}
	q += ") TO STDOUT"
	lw := &lineWriter{fn: fn}
	if _, err := conn.Conn().PgConn().CopyTo(ctx, lw, q); err != nil {
		return fmt.Errorf("registered keys: %w", err)
	}
	lw.flush()
	return nil
}

// quoteLiteral quotes a string as an SQL literal (COPY takes no
// parameters).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// lineWriter splits COPY's text output into lines.
type lineWriter struct {
	fn   func(string)
	rest []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(w.rest) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.rest = append(w.rest, p...)
			return n, nil
		}
		w.rest = append(w.rest, p[:i]...)
		w.fn(string(w.rest))
		w.rest = w.rest[:0]
		p = p[i+1:]
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		w.fn(string(p[:i]))
		p = p[i+1:]
	}
	w.rest = append(w.rest, p...)
	return n, nil
}

func (w *lineWriter) flush() {
	if len(w.rest) > 0 {
		w.fn(string(w.rest))
		w.rest = nil
	}
}

// dedupeTx is one batch on one connection. Writes whose result the
// batch does not read are queued and sent in the same pipeline as the
// next statement that is waited for, or with the COMMIT: a batch costs a
// round trip per step that needs an answer, not per statement. An error
// of a queued write surfaces with that next round trip.
type dedupeTx struct {
	conn        *pgx.Conn
	pending     []queued
	replay      bool // record through the staging table (Decide)
	afterCommit []func()
}

// queued is a statement waiting for the next round trip.
type queued struct {
	what string // what was being done, for its error
	sql  string
	args []any
}

// boundary reports whether the statement begins or ends a transaction.
func (q queued) boundary() bool { return q.sql == "BEGIN" || q.sql == "COMMIT" }

func (t *dedupeTx) queue(what, sql string, args ...any) {
	t.pending = append(t.pending, queued{what: what, sql: sql, args: args})
}

// send sends the queued statements, then b's, in one pipeline, and
// returns b's results once the queued ones have succeeded. The caller
// closes the results.
func (t *dedupeTx) send(ctx context.Context, b *pgx.Batch) (pgx.BatchResults, error) {
	all := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(t.pending)+b.Len())}
	for _, q := range t.pending {
		all.Queue(q.sql, q.args...)
	}
	all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
	pending := t.pending
	t.pending = nil
	br := t.conn.SendBatch(ctx, all)
	for _, q := range pending {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("%s: %w", q.what, err)
		}
	}
	return br, nil
}

// flush sends the queued statements and waits for them.
func (t *dedupeTx) flush(ctx context.Context) error {
	if len(t.pending) == 0 {
		return nil
	}
	br, err := t.send(ctx, &pgx.Batch{})
	if err != nil {
		return err
	}
	return br.Close()
}

// commit sends what is queued with the COMMIT.
func (t *dedupeTx) commit(ctx context.Context) error {
	t.queue("commit", "COMMIT")
	return t.flush(ctx)
}

// People reads registrations and device pairs of the given people in one
// round trip. Lookups are written as LATERAL subqueries so that each key
// is one index probe, whatever the planner's statistics say: a new table
// has none, the planner then flattens the subquery into a hash join over
// the whole table, and a batch gets slower as the table grows. OFFSET 0
// keeps the subquery a parameterised index scan.
func (t *dedupeTx) People(ctx context.Context, keys []dedupe.PersonKey) (map[dedupe.PersonKey]*dedupe.Person, error) {
	people, _, err := t.Look(ctx, keys, nil)
	return people, err
}

// Look reads the people (People) and locks and reads the phones (Phones)
// in one round trip.
func (t *dedupeTx) Look(ctx context.Context, keys []dedupe.PersonKey, phones []dedupe.PhoneKey) (map[dedupe.PersonKey]*dedupe.Person, map[dedupe.PhoneKey]map[string]bool, error) {
	b := &pgx.Batch{}
	readPeople := queuePeople(b, keys)
	readPhones := queuePhones(b, phones)
	br, err := t.send(ctx, b)
	if err != nil {
		return nil, nil, fmt.Errorf("people: %w", err)
	}
	defer br.Close()
	people, err := readPeople(br)
	if err != nil {
		return nil, nil, err
	}
	locked, err := readPhones(br)
	if err != nil {
		return nil, nil, err
	}
	if err := br.Close(); err != nil {
		return nil, nil, fmt.Errorf("people: %w", err)
	}
	return people, locked, nil
}

// queuePeople queues the reads of People and returns the function that
// reads their answers.
func queuePeople(b *pgx.Batch, keys []dedupe.PersonKey) func(pgx.BatchResults) (map[dedupe.PersonKey]*dedupe.Person, error) {
	// Grouped by campaign so that each query is an index scan with
	// = ANY(...), whatever the planner thinks of an unnest join.
	byCampaign := map[string][]string{}
	for _, k := range keys {
		byCampaign[k.Campaign] = append(byCampaign[k.Campaign], k.IdentityKey)
	}
	for c, ids := range byCampaign {
		b.Queue(`SELECT r.campaign, r.identity_key, r.id, r.first_receipt, r.device_key, r.phone_verified
			FROM unnest($2::text[]) AS k(identity_key),
			LATERAL (SELECT * FROM registrations r WHERE r.campaign = $1 AND r.identity_key = k.identity_key OFFSET 0) r`, c, ids)
		b.Queue(`SELECT dp.campaign, dp.identity_key, dp.device_key, min(dp.first_receipt)
			FROM unnest($2::text[]) AS k(identity_key),
			LATERAL (SELECT * FROM device_people dp WHERE dp.campaign = $1 AND dp.identity_key = k.identity_key OFFSET 0) dp
			GROUP BY 1, 2, 3`, c, ids)
	}
	return func(br pgx.BatchResults) (map[dedupe.PersonKey]*dedupe.Person, error) {
		out := make(map[dedupe.PersonKey]*dedupe.Person, len(keys))
		person := func(k dedupe.PersonKey) *dedupe.Person {
			p := out[k]
			if p == nil {
				p = &dedupe.Person{Devices: map[string]string{}}
				out[k] = p
			}
			return p
		}
		for range byCampaign {
			rows, _ := br.Query()
			r := &dedupe.Registration{}
			_, err := pgx.ForEachRow(rows, []any{&r.Campaign, &r.IdentityKey, &r.ID, &r.FirstReceipt, &r.DeviceKey, &r.PhoneVerified}, func() error {
				reg := *r
				person(dedupe.PersonKey{Campaign: reg.Campaign, IdentityKey: reg.IdentityKey}).Registration = &reg
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("people: registrations: %w", err)
			}
			rows, _ = br.Query()
			var k dedupe.PersonKey
			var device, first string
			_, err = pgx.ForEachRow(rows, []any{&k.Campaign, &k.IdentityKey, &device, &first}, func() error {
				person(k).Devices[device] = first
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("people: devices: %w", err)
			}
		}
		return out, nil
	}
}

type deviceWindow struct{ campaign, window, device string }

// CountDevices ranks each pair on its device, in a short transaction of
// its own that commits with the batch's next round trip. A device's pairs
// in a window are ranked 1, 2, 3… in the order they were first seen, so
// the device's distinct people are its highest rank. New pairs take the next ranks
// under a transaction-scoped advisory lock on the device, which every
// worker shares; locks are taken in key order, so two workers cannot
// deadlock on the same devices. The lock writes nothing, where a counter
// row per device would be one more row written for most submissions.
func (t *dedupeTx) CountDevices(ctx context.Context, pairs []dedupe.Pair) ([]dedupe.DeviceCount, error) {
	out := make([]dedupe.DeviceCount, len(pairs))
	type cw struct{ campaign, window string }
	devsOf := map[cw][]string{}
	seenDW := map[deviceWindow]bool{}
	var locks []int32
	for _, p := range pairs {
		dw := deviceWindow{p.Campaign, p.Window, p.DeviceKey}
		if !seenDW[dw] {
			seenDW[dw] = true
			devsOf[cw{p.Campaign, p.Window}] = append(devsOf[cw{p.Campaign, p.Window}], p.DeviceKey)
			locks = append(locks, dw.lockKey())
		}
	}
	slices.Sort(locks)
	locks = slices.Compact(locks)

	// One round trip: lock the devices, then read every pair they have.
	// The pairs' transaction need not wait for its WAL to reach the disk:
	// whoever decides on its ranks commits after it, and a commit flushes
	// the WAL of every transaction committed before; if nobody did, a
	// crash replays the batch to the same ranks.
	b := &pgx.Batch{}
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(`SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int[]) AS k`, deviceLockClass, locks)
	for k, devs := range devsOf {
		b.Queue(`SELECT dp.campaign, dp.window_id, dp.device_key, dp.identity_key, dp.rank
			FROM unnest($3::text[]) AS d(device_key),
			LATERAL (SELECT * FROM device_people dp
				WHERE dp.campaign = $1 AND dp.window_id = $2 AND dp.device_key = d.device_key OFFSET 0) dp`, k.campaign, k.window, devs)
	}
	br, err := t.send(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("count devices: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("count devices: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("count devices: lock: %w", err)
	}
	type pairKey struct {
		dw     deviceWindow
		person string
	}
	known := map[pairKey]int{}
	people := map[deviceWindow]int{}
	for range devsOf {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return nil, fmt.Errorf("count devices: known pairs: %w", err)
		}
		for rows.Next() {
			var pk pairKey
			var rank int
			if err := rows.Scan(&pk.dw.campaign, &pk.dw.window, &pk.dw.device, &pk.person, &rank); err != nil {
				rows.Close()
				br.Close()
				return nil, fmt.Errorf("count devices: known pairs: %w", err)
			}
			known[pk] = rank
			people[pk.dw] = max(people[pk.dw], rank)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			br.Close()
			return nil, fmt.Errorf("count devices: known pairs: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("count devices: known pairs: %w", err)
	}

	// New pairs take the next ranks of their device, in stream order; the
	// same pair twice in a batch is one.
	var nc, nw, nd, np, nr []string
	var nrank []int32
	for i, p := range pairs {
		pk := pairKey{deviceWindow{p.Campaign, p.Window, p.DeviceKey}, p.IdentityKey}
		rank, ok := known[pk]
		if !ok {
			rank = people[pk.dw] + 1
			people[pk.dw] = rank
			known[pk] = rank
			nc, nw, nd, np, nr = append(nc, p.Campaign), append(nw, p.Window), append(nd, p.DeviceKey), append(np, p.IdentityKey), append(nr, p.Receipt)
			nrank = append(nrank, int32(rank))
		}
		out[i].Rank = rank
	}
	for i, p := range pairs {
		out[i].People = people[deviceWindow{p.Campaign, p.Window, p.DeviceKey}]
	}
	// The new pairs and the COMMIT that releases the device locks go
	// with the batch's next round trip, which opens its own transaction.
	if len(nc) > 0 {
		t.queue("count devices: insert pairs", `INSERT INTO device_people (campaign, window_id, device_key, identity_key, first_receipt, rank)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])`, nc, nw, nd, np, nr, nrank)
	}
	t.queue("count devices: commit", "COMMIT")
	t.queue("begin", "BEGIN")
	return out, nil
}

// deviceLockClass is the first key of the devices' advisory locks: a
// namespace of their own beside any other advisory lock of the database.
const deviceLockClass = 0x70726564 // "pred"

// lockKey is the second key of the device's advisory lock. Two devices
// that hash alike share a lock, which only serialises them.
func (dw deviceWindow) lockKey() int32 {
	h := fnv.New32a()
	h.Write([]byte(dw.campaign))
	h.Write([]byte{0})
	h.Write([]byte(dw.window))
	h.Write([]byte{0})
	h.Write([]byte(dw.device))
	return int32(h.Sum32())
}

// exec sends one statement after what is queued and waits for it.
func (t *dedupeTx) exec(ctx context.Context, what, sql string, args ...any) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br, err := t.send(ctx, b)
	if err != nil {
		return pgconn.CommandTag{}, fmt.Errorf("%s: %w", what, err)
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return pgconn.CommandTag{}, fmt.Errorf("%s: %w", what, err)
	}
	return tag, nil
}

// stage creates the staging table of replayed decisions once per
// connection (it is temporary, so each connection has its own); ON COMMIT
// DELETE ROWS empties it at each commit. The connection remembers that it
// has it, so a batch pays no round trip for it.
func (t *dedupeTx) stage(ctx context.Context) error {
	data := t.conn.PgConn().CustomData()
	if data[stagedKey] != nil {
		return nil
	}
	_, err := t.exec(ctx, "staging table", `CREATE TEMP TABLE IF NOT EXISTS dedupe_decision_stage (
			campaign text, receipt text, shard integer, window_id text, kind text, reason text,
			provider text, identity_key text, registration_id bigint, matched_receipt text,
			device_key text, addr_key text, birthdate date, region text, clinic text, earliest date,
			phone_kid text, phone_enc bytea, phone_verified boolean, received_at timestamptz,
			decided_at timestamptz, phone_key text
		) ON COMMIT DELETE ROWS`)
	if err != nil {
		return err
	}
	// Remembered at commit only: a rolled-back transaction takes its
	// CREATE TEMP TABLE with it.
	t.afterCommit = append(t.afterCommit, func() { data[stagedKey] = true })
	return nil
}

// stagedKey marks a connection that has the staging table.
const stagedKey = "prereg.dedupe.staged"

// Register inserts the new registrations in one statement over arrays,
// with ON CONFLICT DO NOTHING: people whose insert lost to an existing
// registration come back with Inserted false.
func (t *dedupeTx) Register(ctx context.Context, regs []dedupe.NewRegistration) ([]dedupe.Registration, error) {
	n := len(regs)
	camps, idents, windows, regions, kids := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	firsts, devices := make([]string, n), make([]string, n)
	shards, births, received := make([]int32, n), make([]time.Time, n), make([]time.Time, n)
	clinics, earliest, encs, verified := make([]*string, n), make([]*time.Time, n), make([][]byte, n), make([]bool, n)
	for i := range regs {
		r := &regs[i]
		camps[i], idents[i], shards[i], windows[i], births[i], regions[i] = r.Campaign, r.IdentityKey, int32(r.Shard), r.Window, r.Birthdate, r.Region
		clinics[i], earliest[i], kids[i], encs[i], verified[i] = nullString(r.Clinic), r.Earliest, r.Phone.KeyID, nonNilBytes(r.Phone.Data), r.PhoneVerified
		firsts[i], devices[i], received[i] = r.FirstReceipt, r.DeviceKey, r.ReceivedAt
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, clinic,
			earliest, phone_kid, phone_enc, phone_verified, first_receipt, device_key, received_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::date[], $6::text[], $7::text[],
			$8::date[], $9::text[], $10::bytea[], $11::bool[], $12::text[], $13::text[], $14::timestamptz[])
		ON CONFLICT (campaign, identity_key) DO NOTHING
		RETURNING campaign, identity_key, id`,
		camps, idents, shards, windows, births, regions, clinics, earliest, kids, encs, verified, firsts, devices, received)
	br, err := t.send(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	ids := make(map[dedupe.PersonKey]int64, len(regs))
	var k dedupe.PersonKey
	var id int64
	rows, _ := br.Query()
	_, err = pgx.ForEachRow(rows, []any{&k.Campaign, &k.IdentityKey, &id}, func() error {
		ids[k] = id
		return nil
	})
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("register: insert: %w", err)
	}
	out := make([]dedupe.Registration, len(regs))
	var lost []dedupe.PersonKey
	for i, r := range regs {
		k := dedupe.PersonKey{Campaign: r.Campaign, IdentityKey: r.IdentityKey}
		if id, ok := ids[k]; ok {
			out[i] = dedupe.Registration{ID: id, Campaign: r.Campaign, IdentityKey: r.IdentityKey, FirstReceipt: r.FirstReceipt,
				DeviceKey: r.DeviceKey, PhoneVerified: r.PhoneVerified, Inserted: true}
			continue
		}
		lost = append(lost, k)
	}
	if len(lost) == 0 {
		return out, nil
	}
	known, err := t.People(ctx, lost)
	if err != nil {
		return nil, fmt.Errorf("register: conflicts: %w", err)
	}
	for i, r := range regs {
		if out[i].Inserted {
			continue
		}
		p := known[dedupe.PersonKey{Campaign: r.Campaign, IdentityKey: r.IdentityKey}]
		if p == nil || p.Registration == nil {
			return nil, fmt.Errorf("register: a registration conflicted but cannot be found")
		}
		out[i] = *p.Registration
	}
	return out, nil
}

var decisionStageColumns = []string{"campaign", "receipt", "shard", "window_id", "kind", "reason", "provider", "identity_key",
	"registration_id", "matched_receipt", "device_key", "addr_key", "birthdate", "region", "clinic", "earliest",
	"phone_kid", "phone_enc", "phone_verified", "received_at", "decided_at", "phone_key"}

// Record inserts the decisions and returns how many were new. A batch is
// copied straight into decisions, the storage's fastest path, with no
// savepoint around it: a replayed batch (some receipts decided already)
// makes that COPY fail on the primary key, which aborts the transaction,
// and Decide runs the batch again recording through a staging table with
// ON CONFLICT DO NOTHING, which leaves the first decisions in place.
// Replays follow a crash only, so the common batch pays no round trips for
// them.
func (t *dedupeTx) Record(ctx context.Context, ds []dedupe.Decision) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	if t.replay {
		return t.recordReplay(ctx, ds)
	}
	// COPY leaves the pipeline: a queued BEGIN or COMMIT must be sent
	// before it; queued writes may wait for the COMMIT.
	if slices.ContainsFunc(t.pending, queued.boundary) {
		if err := t.flush(ctx); err != nil {
			return 0, fmt.Errorf("record decisions: %w", err)
		}
	}
	n, err := t.conn.CopyFrom(ctx, pgx.Identifier{"decisions"}, decisionStageColumns, decisionRows(ds))
	if IsUniqueViolation(err) {
		return 0, fmt.Errorf("record decisions: %w", errReplay)
	}
	if err != nil {
		return 0, fmt.Errorf("record decisions: copy: %w", err)
	}
	return int(n), nil
}

// recordReplay records a replayed batch's decisions, leaving those
// recorded already in place.
func (t *dedupeTx) recordReplay(ctx context.Context, ds []dedupe.Decision) (int, error) {
	if err := t.stage(ctx); err != nil {
		return 0, fmt.Errorf("record decisions: %w", err)
	}
	if err := t.flush(ctx); err != nil {
		return 0, fmt.Errorf("record decisions: %w", err)
	}
	if _, err := t.conn.CopyFrom(ctx, pgx.Identifier{"dedupe_decision_stage"}, decisionStageColumns, decisionRows(ds)); err != nil {
		return 0, fmt.Errorf("record decisions: copy: %w", err)
	}
	tag, err := t.exec(ctx, "record decisions: insert", `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, reason, provider, identity_key,
			registration_id, matched_receipt, device_key, addr_key, birthdate, region, clinic, earliest,
			phone_kid, phone_enc, phone_verified, received_at, decided_at, phone_key)
		SELECT campaign, receipt, shard, window_id, kind, reason, provider, identity_key,
			registration_id, matched_receipt, device_key, addr_key, birthdate, region, clinic, earliest,
			phone_kid, phone_enc, phone_verified, received_at, decided_at, phone_key FROM dedupe_decision_stage
		ON CONFLICT DO NOTHING`)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// decisionRows is the COPY source of decisions, in decisionStageColumns.
func decisionRows(ds []dedupe.Decision) pgx.CopyFromSource {
	return pgx.CopyFromSlice(len(ds), func(i int) ([]any, error) {
		d := &ds[i]
		var regID *int64
		if d.RegistrationID != 0 {
			regID = &d.RegistrationID
		}
		return []any{d.Campaign, d.Receipt, int32(d.Shard), d.Window, string(d.Kind), string(d.Reason), d.Provider,
			nullString(d.IdentityKey), regID, nullString(d.MatchedReceipt), d.DeviceKey, nullString(d.AddrKey), d.Birthdate,
			nullString(d.Region), nullString(d.Clinic), d.Earliest, nullString(d.Phone.KeyID), nilIfEmpty(d.Phone.Data),
			d.PhoneVerified, d.ReceivedAt, d.DecidedAt, nullString(d.PhoneKey)}, nil
	})
}

// UpdateContact applies the contact rule's replacements; a registration
// whose phone is already provider-verified keeps it.
func (t *dedupeTx) UpdateContact(ctx context.Context, cs []dedupe.Contact) error {
	if len(cs) == 0 {
		return nil
	}
	ids, kids, encs := make([]int64, len(cs)), make([]string, len(cs)), make([][]byte, len(cs))
	for i, c := range cs {
		ids[i], kids[i], encs[i] = c.RegistrationID, c.Phone.KeyID, c.Phone.Data
	}
	t.queue("update contact", `UPDATE registrations r SET phone_kid = u.kid, phone_enc = u.enc, phone_verified = true
		FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS u(id, kid, enc)
		WHERE r.id = u.id AND NOT r.phone_verified`, ids, kids, encs)
	return nil
}

// CountBloom adds a batch's Bloom counts to the shards' counters.
func (t *dedupeTx) CountBloom(ctx context.Context, cs []dedupe.BloomCount) error {
	slices.SortFunc(cs, func(a, b dedupe.BloomCount) int {
		if c := strings.Compare(a.Campaign, b.Campaign); c != 0 {
			return c
		}
		return a.Shard - b.Shard
	})
	camps, shards, maybe, fps := make([]string, len(cs)), make([]int32, len(cs)), make([]int64, len(cs)), make([]int64, len(cs))
	for i, c := range cs {
		camps[i], shards[i], maybe[i], fps[i] = c.Campaign, int32(c.Shard), int64(c.MaybeSeen), int64(c.FalsePositives)
	}
	t.queue("count bloom", `INSERT INTO dedupe_counters AS dc (campaign, shard, maybe_seen, false_positives)
		SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[])
		ON CONFLICT (campaign, shard) DO UPDATE SET maybe_seen = dc.maybe_seen + excluded.maybe_seen,
			false_positives = dc.false_positives + excluded.false_positives`, camps, shards, maybe, fps)
	return nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Held lists a campaign's held decisions, oldest first; with pending only
// those not yet reviewed.
func (s *DedupeStore) Held(ctx context.Context, campaign string, pending bool, limit int) ([]dedupe.HeldSubmission, error) {
	rows, err := s.Pool.Query(ctx, `SELECT campaign, receipt, window_id, reason, device_key, received_at,
			coalesce(review, ''), coalesce(reviewed_by, ''), reviewed_at
		FROM decisions WHERE campaign = $1 AND kind = 'held' AND (NOT $2 OR review IS NULL)
		ORDER BY received_at, receipt LIMIT $3`, campaign, pending, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("list held: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dedupe.HeldSubmission, error) {
		var h dedupe.HeldSubmission
		var reason string
		err := r.Scan(&h.Campaign, &h.Receipt, &h.Window, &reason, &h.DeviceKey, &h.ReceivedAt, &h.Review, &h.ReviewedBy, &h.ReviewedAt)
		h.Reason = prereg.Reason(reason)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("list held: %w", err)
	}
	return out, nil
}

// ReviewHeld records an operator's review beside a held decision. A
// release registers the person from what the held decision kept, unless
// they are registered already; the decision then names the registration.
// The decision is locked for the review, so two operators cannot both act.
func (s *DedupeStore) ReviewHeld(ctx context.Context, receipt, review, by string, now time.Time) (dedupe.ReviewResult, error) {
	if review != dedupe.ReviewReleased && review != dedupe.ReviewRejected {
		return dedupe.ReviewResult{}, fmt.Errorf("review %q: want released or rejected", review)
	}
	res := dedupe.ReviewResult{Receipt: receipt, Review: review}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var (
			campaign, window, region, deviceKey string
			identity, clinic, phoneKid          *string
			birth, earliest                     *time.Time
			phoneEnc                            []byte
			phoneVerified                       bool
			receivedAt                          time.Time
			current, phoneKey                   *string
		)
		err := tx.QueryRow(ctx, `SELECT campaign, window_id, identity_key, coalesce(region, ''), clinic, birthdate, earliest,
				phone_kid, phone_enc, phone_verified, device_key, received_at, review, phone_key
			FROM decisions WHERE receipt = $1 AND kind = 'held' FOR UPDATE`, receipt).
			Scan(&campaign, &window, &identity, &region, &clinic, &birth, &earliest, &phoneKid, &phoneEnc, &phoneVerified, &deviceKey, &receivedAt, &current, &phoneKey)
		if errors.Is(err, pgx.ErrNoRows) {
			return prereg.ErrNotFound
		}
		if err != nil {
			return err
		}
		if current != nil {
			return dedupe.ErrAlreadyReviewed
		}
		var regID *int64
		if review == dedupe.ReviewReleased {
			if identity == nil || birth == nil {
				return errors.New("held decision lacks the identity or birth date a registration needs")
			}
			var id int64
			err := tx.QueryRow(ctx, `INSERT INTO registrations (campaign, identity_key, shard, window_id, birthdate, region, clinic,
					earliest, phone_kid, phone_enc, phone_verified, first_receipt, device_key, received_at)
				SELECT $1, $2, c.shard_of, $3, $4, $5, $6, $7, coalesce($8, ''), coalesce($9, ''::bytea), $10, $11, $12, $13
				FROM (SELECT d.shard AS shard_of FROM decisions d WHERE d.receipt = $11) c
				ON CONFLICT (campaign, identity_key) DO NOTHING RETURNING id`,
				campaign, *identity, window, *birth, region, clinic, earliest, phoneKid, phoneEnc, phoneVerified, receipt, deviceKey, receivedAt).Scan(&id)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				res.AlreadyRegistered = true
				if err := tx.QueryRow(ctx, `SELECT id FROM registrations WHERE campaign = $1 AND identity_key = $2`, campaign, *identity).Scan(&id); err != nil {
					return err
				}
			case err != nil:
				return err
			case phoneKey != nil:
				// The operator's release takes the phone's slot like any
				// registration, over the cap if need be: the review is
				// the exception the cap asks for.
				if err := takePhones(ctx, tx, []dedupe.PhoneSlot{{Campaign: campaign, PhoneKey: *phoneKey, IdentityKey: *identity, Receipt: receipt}}); err != nil {
					return err
				}
			}
			res.RegistrationID, regID = id, &id
		}
		_, err = tx.Exec(ctx, `UPDATE decisions SET review = $2, reviewed_by = $3, reviewed_at = $4,
				registration_id = coalesce($5, registration_id)
			WHERE receipt = $1`, receipt, review, by, now, regID)
		return err
	})
	if err != nil {
		return dedupe.ReviewResult{}, fmt.Errorf("review held %s: %w", review, err)
	}
	return res, nil
}
