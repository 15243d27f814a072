package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/scheduler"
)

// AllocationStore is the store behind the scheduler: runs, lottery seeds,
// the snapshot a run plans from, and the chunks it writes.
type AllocationStore struct {
	Pool *pgxpool.Pool
}

var _ scheduler.Store = (*AllocationStore)(nil)

// Campaign reads a campaign's spec.
func (s *AllocationStore) Campaign(ctx context.Context, id string) (*campaign.Campaign, error) {
	return (&CampaignStore{Pool: s.Pool}).Get(ctx, id)
}

// Lock takes the campaign's allocation lock, a session advisory lock held
// on a connection of its own until release: if the process dies, PostgreSQL
// frees it with the connection. Without wait it fails with
// scheduler.ErrBusy when another session holds it.
func (s *AllocationStore) Lock(ctx context.Context, campaignID string, wait bool) (func(), error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock: acquire: %w", err)
	}
	key := "prereg:allocate:" + campaignID
	// On an error (a cancelled wait, say) the session may hold the lock
	// after all: close it rather than hand it back to the pool.
	discard := func() {
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
		conn.Release()
	}
	if wait {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
			discard()
			return nil, fmt.Errorf("lock: wait: %w", err)
		}
	} else {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&ok); err != nil {
			discard()
			return nil, fmt.Errorf("lock: %w", err)
		}
		if !ok {
			conn.Release()
			return nil, scheduler.ErrBusy
		}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
			// The lock lives as long as the session: close it rather than
			// hand a locked session back to the pool.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}, nil
}

// CommitSeed stores the window's seed unless one is committed already, and
// returns the commitment in force.
func (s *AllocationStore) CommitSeed(ctx context.Context, campaignID, window string, seed []byte, at time.Time) (scheduler.Commitment, error) {
	if _, err := s.Pool.Exec(ctx, `INSERT INTO lottery_seeds (campaign, window_id, seed, seed_hash, committed_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (campaign, window_id) DO NOTHING`,
		campaignID, window, seed, scheduler.SeedHash(seed), at); err != nil {
		return scheduler.Commitment{}, fmt.Errorf("store seed: %w", err)
	}
	sd, err := s.Seed(ctx, campaignID, window)
	return sd.Commitment, err
}

// Seed reads the window's committed seed; scheduler.ErrNoSeed when none.
func (s *AllocationStore) Seed(ctx context.Context, campaignID, window string) (scheduler.Seed, error) {
	var sd scheduler.Seed
	err := s.Pool.QueryRow(ctx, `SELECT seed, seed_hash, committed_at, revealed_at FROM lottery_seeds
		WHERE campaign = $1 AND window_id = $2`, campaignID, window).
		Scan(&sd.Value, &sd.Hash, &sd.CommittedAt, &sd.RevealedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return sd, scheduler.ErrNoSeed
	}
	if err != nil {
		return sd, fmt.Errorf("read seed: %w", err)
	}
	sd.Campaign, sd.Window = campaignID, window
	return sd, nil
}

// RevealSeed marks the window's seed revealed (once).
func (s *AllocationStore) RevealSeed(ctx context.Context, campaignID, window string, at time.Time) error {
	if _, err := s.Pool.Exec(ctx, `UPDATE lottery_seeds SET revealed_at = $3
		WHERE campaign = $1 AND window_id = $2 AND revealed_at IS NULL`, campaignID, window, at); err != nil {
		return fmt.Errorf("reveal seed: %w", err)
	}
	return nil
}

// LotteryCommitment is what the public may see of a window's lottery seed:
// its hash from the moment it is committed, the seed once revealed.
type LotteryCommitment struct {
	Window      string     `json:"window"`
	Hash        string     `json:"hash"`
	CommittedAt time.Time  `json:"committed_at"`
	Seed        string     `json:"seed,omitempty"` // hex, once revealed
	RevealedAt  *time.Time `json:"revealed_at,omitempty"`
}

// SeedCommitment is the public commitment of one window's lottery seed
// (for the campaign endpoint); prereg.ErrNotFound when none is committed.
func (s *AllocationStore) SeedCommitment(ctx context.Context, campaignID, window string) (LotteryCommitment, error) {
	all, err := s.SeedCommitments(ctx, campaignID)
	if err != nil {
		return LotteryCommitment{}, err
	}
	for _, c := range all {
		if c.Window == window {
			return c, nil
		}
	}
	return LotteryCommitment{}, fmt.Errorf("lottery commitment of %s/%s: %w", campaignID, window, prereg.ErrNotFound)
}

// SeedCommitments lists the public commitments of a campaign's windows.
func (s *AllocationStore) SeedCommitments(ctx context.Context, campaignID string) ([]LotteryCommitment, error) {
	rows, err := s.Pool.Query(ctx, `SELECT window_id, seed_hash, committed_at,
		    CASE WHEN revealed_at IS NOT NULL THEN encode(seed, 'hex') ELSE '' END, revealed_at
		FROM lottery_seeds WHERE campaign = $1 ORDER BY committed_at, window_id`, campaignID)
	if err != nil {
		return nil, fmt.Errorf("list lottery commitments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LotteryCommitment, error) {
		var c LotteryCommitment
		err := r.Scan(&c.Window, &c.Hash, &c.CommittedAt, &c.Seed, &c.RevealedAt)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list lottery commitments: %w", err)
	}
	return out, nil
}

const runColumns = `id, campaign, window_id, policy, dry_run, state, bound, coalesce(seed_hash, ''), total, done,
	result, coalesce(error, ''), started_at, finished_at`

func scanRun(row pgx.Row) (scheduler.RunRecord, error) {
	var r scheduler.RunRecord
	var result []byte
	err := row.Scan(&r.ID, &r.Campaign, &r.Window, &r.Policy, &r.DryRun, &r.State, &r.Bound, &r.SeedHash,
		&r.Total, &r.Done, &result, &r.Error, &r.StartedAt, &r.FinishedAt)
	if result != nil {
		r.Result = json.RawMessage(result)
	}
	return r, err
}

// InterruptedRun returns the campaign's oldest real run still "running".
// Called under the campaign's lock, such a run has no live process.
func (s *AllocationStore) InterruptedRun(ctx context.Context, campaignID string) (scheduler.RunRecord, bool, error) {
	r, err := scanRun(s.Pool.QueryRow(ctx, `SELECT `+runColumns+` FROM allocation_runs
		WHERE campaign = $1 AND state = 'running' AND NOT dry_run ORDER BY id LIMIT 1`, campaignID))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("find interrupted run: %w", err)
	}
	return r, true, nil
}

// AbandonDryRuns marks the campaign's dry runs still "running" failed: their
// process died, and a dry run writes nothing worth resuming.
func (s *AllocationStore) AbandonDryRuns(ctx context.Context, campaignID string, at time.Time) error {
	if _, err := s.Pool.Exec(ctx, `UPDATE allocation_runs SET state = 'failed', error = 'abandoned: its process stopped', finished_at = $2
		WHERE campaign = $1 AND state = 'running' AND dry_run`, campaignID, at); err != nil {
		return fmt.Errorf("abandon dry runs: %w", err)
	}
	return nil
}

// CreateRun stores a new run; its bound is the highest id of its frozen
// input (r.Bound) when it draws over one, else the campaign's highest
// registration id now.
func (s *AllocationStore) CreateRun(ctx context.Context, r scheduler.RunRecord) (scheduler.RunRecord, error) {
	var bound *int64
	if r.Frozen {
		bound = &r.Bound
	}
	// Requests still pending behind their decision are applied first, so
	// that no cancelled registration draws a slot for want of it.
	if err := (&RequestStore{Pool: s.Pool}).ResolveCampaign(ctx, r.Campaign); err != nil {
		return scheduler.RunRecord{}, fmt.Errorf("create run: %w", err)
	}
	// Under the request lock, shared: the cancellations applied before
	// the run are exactly those up to its cancel_bound (requests.go).
	var out scheduler.RunRecord
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := requestLock(ctx, tx, r.Campaign, true); err != nil {
			return err
		}
		var err error
		// A purged campaign's registrations have no phone to notify: no run.
		out, err = scanRun(tx.QueryRow(ctx, `INSERT INTO allocation_runs (campaign, window_id, policy, dry_run, seed_hash, started_at, bound, cancel_bound)
			SELECT $1::text, $2::text, $3::text, $4::boolean, nullif($5::text, ''), $6::timestamptz,
			    coalesce($7::bigint, (SELECT coalesce(max(id), 0) FROM registrations WHERE campaign = $1)),
			    (SELECT coalesce(max(resolved_seq), 0) FROM cancellations)
			WHERE NOT EXISTS (SELECT 1 FROM campaign_purges WHERE campaign = $1)
			RETURNING `+runColumns, r.Campaign, r.Window, r.Policy, r.DryRun, r.SeedHash, r.StartedAt, bound))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return out, prereg.Conflict("campaign " + r.Campaign + " was purged: nothing left to allocate")
	}
	if err != nil {
		return out, fmt.Errorf("create run: %w", err)
	}
	out.Frozen, out.Input = r.Frozen, r.Input
	return out, nil
}

// Run reads a run; prereg.ErrNotFound when there is none.
func (s *AllocationStore) Run(ctx context.Context, id int64) (scheduler.RunRecord, error) {
	r, err := scanRun(s.Pool.QueryRow(ctx, `SELECT `+runColumns+` FROM allocation_runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, prereg.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read run: %w", err)
	}
	return r, nil
}

// SetTotal records a run's size and progress.
func (s *AllocationStore) SetTotal(ctx context.Context, run int64, total, done int) error {
	if _, err := s.Pool.Exec(ctx, `UPDATE allocation_runs SET total = $2, done = $3 WHERE id = $1`, run, total, done); err != nil {
		return fmt.Errorf("set run total: %w", err)
	}
	return nil
}

// FinishRun records a run's end.
func (s *AllocationStore) FinishRun(ctx context.Context, run int64, state scheduler.RunState, result []byte, errText string, at time.Time) error {
	if _, err := s.Pool.Exec(ctx, `UPDATE allocation_runs SET state = $2, result = $3, error = nullif($4, ''), finished_at = $5,
		    done = CASE WHEN $2 = 'done' THEN total ELSE done END
		WHERE id = $1`, run, state, result, errText, at); err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	return nil
}

// Snapshot reads, in one repeatable-read transaction, the inventory and the
// registrations of a run as they were when it started: the slots' use minus
// the run's own appointments, and the registrations eachRegistration
// selects for it.
func (s *AllocationStore) Snapshot(ctx context.Context, r scheduler.RunRecord) (scheduler.Snapshot, error) {
	var snap scheduler.Snapshot
	c, err := s.Campaign(ctx, r.Campaign)
	if err != nil {
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	// A round is allocated right after its surge was decided: the
	// registrations and appointments it reads have just grown by millions
	// of rows, faster than autovacuum's analyze follows (or at all, where
	// it is off). Planned on stale statistics, the registrations query
	// below takes the tables for small and probes appointments once per
	// registration; fresh ones (a sample of each table, a second or so
	// whatever its size) let it join them in one pass.
	if _, err := s.Pool.Exec(ctx, `ANALYZE registrations, appointments, cancellations`); err != nil {
		return snap, fmt.Errorf("snapshot: analyze: %w", err)
	}
	err = pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		inv, err := readInventory(ctx, tx, c, r.ID)
		if err != nil {
			return err
		}
		snap.Inventory = inv
		snap.Registrations, err = selectRegistrations(ctx, tx, r)
		return err
	})
	if err != nil {
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
}

func readInventory(ctx context.Context, tx pgx.Tx, c *campaign.Campaign, run int64) (scheduler.Inventory, error) {
	inv := scheduler.Inventory{Start: c.Schedule.Start, Days: c.Schedule.Days, Bands: len(c.Schedule.Bands)}
	rows, err := tx.Query(ctx, `SELECT id, region, lat, lng FROM clinics WHERE campaign = $1`, c.ID)
	if err != nil {
		return inv, fmt.Errorf("read clinics: %w", err)
	}
	inv.Clinics, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (scheduler.Clinic, error) {
		var cl scheduler.Clinic
		err := r.Scan(&cl.ID, &cl.Region, &cl.Lat, &cl.Lng)
		return cl, err
	})
	if err != nil {
		return inv, fmt.Errorf("read clinics: %w", err)
	}
	// Byte order, not the database's collation: the plan must not depend on
	// the server's locale.
	slices.SortFunc(inv.Clinics, func(a, b scheduler.Clinic) int { return strings.Compare(a.ID, b.ID) })
	index := make(map[string]int, len(inv.Clinics))
	for i, cl := range inv.Clinics {
		index[cl.ID] = i
	}
	n := len(inv.Clinics) * inv.Days * inv.Bands
	inv.Capacity, inv.Used = make([]int32, n), make([]int32, n)
	slot := func(clinic string, day time.Time, band int16) (int, bool) {
		ci, ok := index[clinic]
		d := int(day.Sub(inv.Start).Hours() / 24)
		if !ok || d < 0 || d >= inv.Days || band < 0 || int(band) >= inv.Bands {
			return 0, false
		}
		return inv.Slot(ci, d, int(band)), true
	}
	rows, err = tx.Query(ctx, `SELECT clinic, day, band, capacity, used FROM slots WHERE campaign = $1`, c.ID)
	if err != nil {
		return inv, fmt.Errorf("read slots: %w", err)
	}
	var clinic string
	var day time.Time
	var band int16
	var capacity, used int32
	_, err = pgx.ForEachRow(rows, []any{&clinic, &day, &band, &capacity, &used}, func() error {
		if i, ok := slot(clinic, day, band); ok {
			inv.Capacity[i], inv.Used[i] = capacity, used
		}
		return nil
	})
	if err != nil {
		return inv, fmt.Errorf("read slots: %w", err)
	}
	// Only the live ones: a cancelled appointment holds no slot.
	rows, err = tx.Query(ctx, `SELECT clinic, day, band, count(*)::int4 FROM appointments WHERE run_id = $1 AND status = 'scheduled' GROUP BY 1, 2, 3`, run)
	if err != nil {
		return inv, fmt.Errorf("read the run's appointments: %w", err)
	}
	var own int32
	_, err = pgx.ForEachRow(rows, []any{&clinic, &day, &band, &own}, func() error {
		if i, ok := slot(clinic, day, band); ok {
			inv.Used[i] -= own
		}
		return nil
	})
	if err != nil {
		return inv, fmt.Errorf("read the run's appointments: %w", err)
	}
	return inv, nil
}

// eachRegistration is the one selection of the registrations a round
// draws over, for a run and for freezing a round's input (r.ID 0, no
// bound): those up to the bound, without an appointment of another run,
// that are of the window, or left unassigned by an earlier round, or of
// another window whose frozen round they missed (they registered after it
// froze, a held decision released late, say: they go to the next round to
// freeze). A run of a frozen round keeps only the frozen input's
// registrations (r.Input) of these.
//
// Cancelled registrations are left out: all of them when a round's input
// is frozen (r.ID 0), those cancelled before the run was created
// (allocation_runs.cancel_bound, so that a resumed run leaves out the
// same ones) in a run that is not of a frozen round. A run of a frozen
// round draws over its whole input, as the published round file says,
// and WriteChunk gives a registration cancelled since the freeze a
// cancelled appointment that holds no slot.
//
// It hands fn each registration as it is read, in ascending id order when
// byID, so that a caller keeps only what it needs of them: fn gets the
// same Registration every time, overwritten by the next row. Its strings
// are shared by all registrations of one region or clinic.
func eachRegistration(ctx context.Context, tx pgx.Tx, r scheduler.RunRecord, byID bool, fn func(*scheduler.Registration) error) error {
	// The late ones first, with an anti-join: inside the OR below a
	// subquery over the frozen lists would be evaluated row by row. The
	// window's own round does not count: a late registration in it is
	// exactly one this round took over.
	rows, err := tx.Query(ctx, `SELECT g.id FROM registrations g
		JOIN lottery_rounds r ON r.campaign = g.campaign AND r.window_id = g.window_id
		WHERE g.campaign = $1 AND g.window_id <> $2 AND g.unassigned_reason IS NULL
		  AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.registration_id = g.id)
		  AND NOT EXISTS (SELECT 1 FROM lottery_rounds f, unnest(f.input_ids) AS x(id)
		      WHERE f.campaign = $1 AND f.window_id <> $2 AND x.id = g.id)`,
		r.Campaign, r.Window)
	if err != nil {
		return fmt.Errorf("read late registrations: %w", err)
	}
	late, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("read late registrations: %w", err)
	}
	// A join, not "= ANY": the frozen list may hold millions of ids.
	from, args := `registrations g`, []any{r.Campaign, r.Window, r.ID, r.Bound, late}
	cancelledBefore := `true`
	switch {
	case r.Frozen:
		cancelledBefore = `false`
	case r.ID != 0:
		cancelledBefore = `c.resolved_seq <= (SELECT cancel_bound FROM allocation_runs WHERE id = $3)`
	}
	orderBy := ``
	if byID {
		orderBy = ` ORDER BY g.id`
	}
	if r.Frozen {
		from, args = `unnest($6::int8[]) AS f(id) JOIN registrations g ON g.id = f.id`, append(args, r.Input)
	}
	rows, err = tx.Query(ctx, `SELECT g.id, g.region, coalesce(g.clinic, ''), g.earliest, g.received_at,
		    g.window_id <> $2, g.unassigned_reason IS NOT NULL,
		    a.run_id IS NOT NULL OR g.unassigned_run_id IS NOT DISTINCT FROM $3
		FROM `+from+` LEFT JOIN appointments a ON a.registration_id = g.id
		WHERE g.campaign = $1 AND g.id <= $4
		  AND (g.window_id = $2 OR g.unassigned_reason IS NOT NULL OR a.run_id = $3 OR g.id = ANY($5::int8[]))
		  AND (a.id IS NULL OR a.run_id = $3)
		  AND NOT EXISTS (SELECT 1 FROM cancellations c WHERE c.registration_id = g.id AND `+cancelledBefore+`)`+orderBy, args...)
	if err != nil {
		return fmt.Errorf("read registrations: %w", err)
	}
	// Regions and clinics are few, registrations many: one string each,
	// not one per registration.
	strs := interner{}
	var reg scheduler.Registration
	var region, clinic pgtype.DriverBytes
	var earliest pgtype.Date
	var received time.Time
	_, err = pgx.ForEachRow(rows, []any{&reg.ID, &region, &clinic, &earliest, &received, &reg.CarriedOver, &reg.WasUnassigned, &reg.Written},
		func() error {
			reg.Arrival = received.UnixNano()
			reg.Region, reg.Clinic = strs.of(region), strs.of(clinic)
			reg.Earliest = 0
			if earliest.Valid {
				if earliest.InfinityModifier != pgtype.Finite {
					return fmt.Errorf("registration %d: an infinite earliest date", reg.ID)
				}
				reg.Earliest = scheduler.DateOf(earliest.Time)
			}
			return fn(&reg)
		})
	if err != nil {
		return fmt.Errorf("read registrations: %w", err)
	}
	return nil
}

// selectRegistrations collects eachRegistration's selection for a run.
//
// A run of a frozen round selects at most its input: room for all of it
// from the start. Any other run does not know how many it will read, and a
// slice grown by append holds its old and new arrays at once (up to 2.25
// times the registrations' 64 bytes each, plus the garbage of earlier
// growths): the registrations are packed into fixed blocks of 32 bytes each
// as they are read, and unpacked once into a slice of exactly their number.
func selectRegistrations(ctx context.Context, tx pgx.Tx, r scheduler.RunRecord) ([]scheduler.Registration, error) {
	if r.Frozen {
		out := make([]scheduler.Registration, 0, len(r.Input))
		err := eachRegistration(ctx, tx, r, false, func(reg *scheduler.Registration) error {
			out = append(out, *reg)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	var p packedRegistrations
	if err := eachRegistration(ctx, tx, r, false, p.add); err != nil {
		return nil, err
	}
	return p.unpack(), nil
}

// packedRegistrations holds registrations as they are read, in blocks that
// are never copied, at 32 bytes a registration instead of 64.
type packedRegistrations struct {
	blocks  [][]packedRegistration
	n       int
	strs    []string // region and clinic values, by index
	indexOf map[string]uint32
}

type packedRegistration struct {
	id, arrival    int64
	earliest       scheduler.Date
	region, clinic uint32
}

// packedBlock is the registrations of one block: 256 KiB.
const packedBlock = 8192

// The flags of a packed registration, in the top bits of its clinic index.
const (
	packedCarriedOver   uint32 = 1 << 31
	packedWasUnassigned uint32 = 1 << 30
	packedWritten       uint32 = 1 << 29
	packedIndex                = packedWritten - 1
)

func (p *packedRegistrations) str(s string) (uint32, error) {
	if i, ok := p.indexOf[s]; ok {
		return i, nil
	}
	if p.indexOf == nil {
		p.indexOf = map[string]uint32{}
	}
	i := uint32(len(p.strs))
	if i > packedIndex {
		return 0, fmt.Errorf("more than %d distinct regions and clinics", packedIndex+1)
	}
	p.strs = append(p.strs, s)
	p.indexOf[s] = i
	return i, nil
}

func (p *packedRegistrations) add(r *scheduler.Registration) error {
	region, err := p.str(r.Region)
	if err != nil {
		return err
	}
	clinic, err := p.str(r.Clinic)
	if err != nil {
		return err
	}
	e := packedRegistration{id: r.ID, arrival: r.Arrival, earliest: r.Earliest, region: region, clinic: clinic}
	if r.CarriedOver {
		e.clinic |= packedCarriedOver
	}
	if r.WasUnassigned {
		e.clinic |= packedWasUnassigned
	}
	if r.Written {
		e.clinic |= packedWritten
	}
	if p.n%packedBlock == 0 {
		p.blocks = append(p.blocks, make([]packedRegistration, 0, packedBlock))
	}
	b := &p.blocks[len(p.blocks)-1]
	*b = append(*b, e)
	p.n++
	return nil
}

// unpack returns the registrations in the order they were added, and lets
// go of the blocks one by one.
func (p *packedRegistrations) unpack() []scheduler.Registration {
	out := make([]scheduler.Registration, 0, p.n)
	for bi, b := range p.blocks {
		for _, e := range b {
			out = append(out, scheduler.Registration{ID: e.id, Arrival: e.arrival, Earliest: e.earliest,
				Region: p.strs[e.region], Clinic: p.strs[e.clinic&packedIndex],
				CarriedOver: e.clinic&packedCarriedOver != 0, WasUnassigned: e.clinic&packedWasUnassigned != 0, Written: e.clinic&packedWritten != 0})
		}
		p.blocks[bi] = nil
	}
	p.blocks = nil
	return out
}

// interner hands out one string per distinct value.
type interner map[string]string

func (in interner) of(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// WriteChunk writes one chunk of a run in one transaction: the slots' used
// counters, the appointments and their outbox rows (version 1, key
// prereg.OutboxKey), the unassigned reasons, and the run's progress. The
// slots_capacity and appointments_one_per_registration constraints refuse
// the whole chunk if it would over-book or book twice.
//
// It holds the campaign's request lock, shared (requests.go): a
// registration cancelled by then gets its appointment written cancelled,
// holding no slot and sending no SMS, so that the run's outcome is still
// the plan a published round recomputes; the slot stays free for the
// next round.
func (s *AllocationStore) WriteChunk(ctx context.Context, r scheduler.RunRecord, c scheduler.Chunk) error {
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := requestLock(ctx, tx, r.Campaign, true); err != nil {
			return err
		}
		live, dropped := c.Assignments, []scheduler.Assignment(nil)
		if len(c.Assignments) > 0 {
			ids := make([]int64, len(c.Assignments))
			for i, a := range c.Assignments {
				ids[i] = a.Registration
			}
			cancelled, err := cancelledAmong(ctx, tx, ids)
			if err != nil {
				return err
			}
			if len(cancelled) > 0 {
				live = make([]scheduler.Assignment, 0, len(c.Assignments))
				for _, a := range c.Assignments {
					if cancelled[a.Registration] {
						dropped = append(dropped, a)
					} else {
						live = append(live, a)
					}
				}
			}
		}
		return writeChunk(ctx, tx, r, c, live, dropped)
	})
	if err != nil {
		return fmt.Errorf("write chunk of run %d: %w", r.ID, err)
	}
	return nil
}

func writeChunk(ctx context.Context, tx pgx.Tx, r scheduler.RunRecord, c scheduler.Chunk, live, cancelled []scheduler.Assignment) error {
	type slotKey struct {
		clinic string
		day    time.Time
		band   int
	}
	perSlot := map[slotKey]int32{}
	var cleared []int64
	for _, a := range live {
		perSlot[slotKey{a.Clinic, a.Day, a.Band}]++
	}
	for _, a := range c.Assignments {
		if a.WasUnassigned {
			cleared = append(cleared, a.Registration)
		}
	}
	keys := make([]slotKey, 0, len(perSlot))
	for k := range perSlot {
		keys = append(keys, k)
	}
	// One order for every writer, so that row locks cannot deadlock.
	slices.SortFunc(keys, func(a, b slotKey) int {
		if c := strings.Compare(a.clinic, b.clinic); c != 0 {
			return c
		}
		if c := a.day.Compare(b.day); c != 0 {
			return c
		}
		return a.band - b.band
	})
	clinics, days, bands, counts := make([]string, len(keys)), make([]time.Time, len(keys)), make([]int16, len(keys)), make([]int32, len(keys))
	for i, k := range keys {
		clinics[i], days[i], bands[i], counts[i] = k.clinic, k.day, int16(k.band), perSlot[k]
	}
	if len(keys) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE slots s SET used = s.used + v.n
			FROM unnest($2::text[], $3::date[], $4::int2[], $5::int4[]) AS v(clinic, day, band, n)
			WHERE s.campaign = $1 AND s.clinic = v.clinic AND s.day = v.day AND s.band = v.band`,
			r.Campaign, clinics, days, bands, counts); err != nil {
			return fmt.Errorf("count slots: %w", err)
		}
	}
	if len(live) > 0 {
		if err := copyAppointments(ctx, tx, r, live); err != nil {
			return err
		}
	}
	for _, a := range cancelled {
		if _, err := tx.Exec(ctx, `INSERT INTO appointments (campaign, registration_id, clinic, day, band, run_id, status)
			VALUES ($1, $2, $3, $4, $5, $6, 'cancelled')`, r.Campaign, a.Registration, a.Clinic, a.Day, int16(a.Band), r.ID); err != nil {
			return fmt.Errorf("record a cancelled registration's draw: %w", err)
		}
	}
	if len(cleared) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE registrations SET unassigned_reason = NULL WHERE id = ANY($1)`, cleared); err != nil {
			return fmt.Errorf("clear unassigned: %w", err)
		}
	}
	if len(c.Unassigned) > 0 {
		ids, reasons := make([]int64, len(c.Unassigned)), make([]string, len(c.Unassigned))
		for i, u := range c.Unassigned {
			ids[i], reasons[i] = u.Registration, string(u.Reason)
		}
		if _, err := tx.Exec(ctx, `UPDATE registrations g SET unassigned_reason = v.reason, unassigned_run_id = $1
			FROM unnest($2::int8[], $3::text[]) AS v(id, reason) WHERE g.id = v.id`, r.ID, ids, reasons); err != nil {
			return fmt.Errorf("record unassigned: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE allocation_runs SET done = done + $2 WHERE id = $1`,
		r.ID, len(c.Assignments)+len(c.Unassigned)); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	return nil
}

// copyAppointments reserves the appointments' ids from their sequence, so
// that the outbox rows can name them, and copies both.
func copyAppointments(ctx context.Context, tx pgx.Tx, r scheduler.RunRecord, as []scheduler.Assignment) error {
	rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('appointments', 'id')) FROM generate_series(1, $1)`, len(as))
	if err != nil {
		return fmt.Errorf("reserve appointment ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("reserve appointment ids: %w", err)
	}
	i := 0
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"appointments"}, AppointmentColumns, pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(as) {
			return nil, nil
		}
		a := as[i]
		i++
		return []any{ids[i-1], r.Campaign, a.Registration, a.Clinic, a.Day, int16(a.Band), r.ID}, nil
	})); err != nil {
		return fmt.Errorf("copy appointments: %w", err)
	}
	i = 0
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"outbox"}, OutboxColumns, pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(ids) {
			return nil, nil
		}
		i++
		return []any{r.Campaign, ids[i-1], int32(1), prereg.OutboxKey(r.Campaign, ids[i-1], 1)}, nil
	})); err != nil {
		return fmt.Errorf("copy outbox: %w", err)
	}
	return nil
}

// The columns allocation writes: what `prereg bench allocate` copies again
// as its reference.
var (
	AppointmentColumns = []string{"id", "campaign", "registration_id", "clinic", "day", "band", "run_id"}
	OutboxColumns      = []string{"campaign", "appointment_id", "version", "idempotency_key"}
)
