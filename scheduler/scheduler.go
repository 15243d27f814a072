package scheduler

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// Policy orders the registrations of a run.
type Policy string

// The policies of `prereg allocate --policy`.
const (
	PolicyLottery Policy = "lottery" // by the committed seed's draw (default)
	PolicyFCFS    Policy = "fcfs"    // by the arrival of the first submission
)

// ParsePolicy parses a policy name; "" is the default, lottery.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", PolicyLottery:
		return PolicyLottery, nil
	case PolicyFCFS:
		return PolicyFCFS, nil
	}
	return "", fmt.Errorf("unknown policy %q (want lottery or fcfs)", s)
}

// Errors callers act on. Each is of a kind of the prereg package, which
// says what the admin API answers.
var (
	// ErrBusy: another allocation of the campaign holds its lock.
	ErrBusy = prereg.Conflict("another allocation of this campaign is running")
	// ErrNoSeed: a lottery needs a seed committed for the window first.
	ErrNoSeed = prereg.Conflict("no lottery seed committed for this window")
	// ErrUnknownWindow: the campaign has no such window.
	ErrUnknownWindow = prereg.NotFound("unknown window")
)

// InterruptedError says that a real run of the campaign died before it
// finished; it must be resumed (the same campaign, window and policy, not
// a dry run) before anything else is allocated, or its resumed result would
// differ from the uninterrupted one.
type InterruptedError struct {
	Run RunRecord
}

// Is makes an interrupted run a conflict (prereg.ErrConflict): nothing
// else may be allocated until it is resumed.
func (e *InterruptedError) Is(target error) bool { return target == prereg.ErrConflict }

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("run %d (window %s, policy %s) was interrupted at %d of %d: resume it first with the same window and policy, not a dry run",
		e.Run.ID, e.Run.Window, e.Run.Policy, e.Run.Done, e.Run.Total)
}

// RunState is the state of an allocation run.
type RunState string

// The states of allocation_runs.state.
const (
	StateRunning RunState = "running"
	StateDone    RunState = "done"
	StateFailed  RunState = "failed"
)

// RunRecord is an allocation run as stored.
type RunRecord struct {
	ID       int64    `json:"id"`
	Campaign string   `json:"campaign"`
	Window   string   `json:"window"`
	Policy   Policy   `json:"policy"`
	DryRun   bool     `json:"dry_run"`
	State    RunState `json:"state"`
	// Bound is the highest registration id the run considers, fixed when
	// it starts, so that a resumed run sees the same registrations.
	Bound    int64  `json:"bound"`
	SeedHash string `json:"seed_hash,omitempty"`
	// Frozen says that the run draws over its window's frozen round: the
	// registrations of Input (ascending ids) only, Bound their highest.
	Frozen     bool            `json:"-"`
	Input      []int64         `json:"-"`
	Total      int             `json:"total"`
	Done       int             `json:"done"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

// Snapshot is what a run plans from: the inventory and the registrations
// as they were when the run started.
type Snapshot struct {
	Inventory     Inventory
	Registrations []Registration
}

// Assignment is one appointment to write.
type Assignment struct {
	Registration int64
	Clinic       string
	Day          time.Time
	Band         int
	// WasUnassigned: an earlier round left the registration unassigned.
	WasUnassigned bool
}

// Unassigned is one registration left without a slot, to record.
type Unassigned struct {
	Registration int64
	Reason       Reason
}

// Chunk is what one transaction writes: appointments with their outbox
// rows and slot counters, the unassigned reasons, and the run's progress.
type Chunk struct {
	Assignments []Assignment
	Unassigned  []Unassigned
}

// Store is what the allocator needs from the database (postgres.AllocationStore).
type Store interface {
	// Campaign reads a campaign's spec (schedule, windows).
	Campaign(ctx context.Context, id string) (*campaign.Campaign, error)
	// Lock takes the campaign's allocation lock: waiting for it with wait,
	// else ErrBusy when another holds it. release frees it.
	Lock(ctx context.Context, campaign string, wait bool) (release func(), err error)
	// CommitSeed stores seed as the window's lottery seed unless one is
	// committed already; either way it returns the commitment in force.
	CommitSeed(ctx context.Context, campaign, window string, seed []byte, at time.Time) (Commitment, error)
	// Seed reads the window's committed seed, ErrNoSeed when none.
	Seed(ctx context.Context, campaign, window string) (Seed, error)
	// RevealSeed marks the window's seed revealed.
	RevealSeed(ctx context.Context, campaign, window string, at time.Time) error
	// InterruptedRun returns the campaign's real run left "running", if any.
	// Only call it holding the lock.
	InterruptedRun(ctx context.Context, campaign string) (RunRecord, bool, error)
	// AbandonDryRuns marks the campaign's dry runs left "running" failed.
	AbandonDryRuns(ctx context.Context, campaign string, at time.Time) error
	// CreateRun stores a new run, fixing its bound; it returns the record.
	CreateRun(ctx context.Context, r RunRecord) (RunRecord, error)
	// Snapshot reads the inventory and registrations of a run as they were
	// when it started, in one consistent read.
	Snapshot(ctx context.Context, r RunRecord) (Snapshot, error)
	// SetTotal records how many registrations a run considers, and how
	// many of them it has written already.
	SetTotal(ctx context.Context, run int64, total, done int) error
	// WriteChunk writes one chunk of a run in one transaction.
	WriteChunk(ctx context.Context, r RunRecord, c Chunk) error
	// FinishRun records a run's end.
	FinishRun(ctx context.Context, run int64, state RunState, result []byte, errText string, at time.Time) error
	// Run reads a run; prereg.ErrNotFound when there is none.
	Run(ctx context.Context, id int64) (RunRecord, error)

	// FreezeRound freezes the window's draw input, the registrations a run
	// of it would select now (Snapshot's selection), with the hash of
	// their canonical encoding (InputHash), unless it is frozen already;
	// froze says whether this call froze it. Cheap when it is frozen.
	FreezeRound(ctx context.Context, campaign, window string, at time.Time) (froze bool, err error)
	// Round reads the window's frozen round; ErrNotFrozen when none.
	Round(ctx context.Context, campaign, window string) (Round, error)
	// RecordRoundRun records, unless a run is recorded already, the real
	// lottery run that draws the window's round and the inventory it plans
	// against.
	RecordRoundRun(ctx context.Context, campaign, window string, run int64, inv *Inventory, maxKm float64) error
	// RoundData reads what a round file publishes; ErrNotFrozen when the
	// window's input is not frozen.
	RoundData(ctx context.Context, campaign, window string) (RoundData, error)
}

// Config configures an Allocator.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Rand is where seeds come from; crypto/rand when nil.
	Rand io.Reader
	// ChunkSize is the number of registrations written per transaction.
	ChunkSize int
	// MaxDistanceKm, when positive, bounds "the nearest region with room"
	// instead of the campaign's bound (campaign.Allocation.MaxDistanceKm,
	// 50 km unless its file says otherwise); 0 leaves the campaign's.
	MaxDistanceKm float64
	// Writers is the number of chunks written at once, on disjoint clinics.
	Writers int
}

// DefaultChunkSize is the number of registrations per transaction: large
// enough that commits cost little, small enough that a resumed run redoes
// little.
const DefaultChunkSize = 10_000

// DefaultWriters is the number of parallel chunk writers: PostgreSQL
// spends most of a chunk on checks and index updates, which two backends do
// side by side on two cores.
const DefaultWriters = 2

// Allocator runs batch allocations.
type Allocator struct {
	store Store
	cfg   Config
	log   *slog.Logger
}

// New makes an Allocator.
func New(store Store, cfg Config) *Allocator {
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.ChunkSize = cmp.Or(cfg.ChunkSize, DefaultChunkSize)
	cfg.Writers = max(1, cmp.Or(cfg.Writers, DefaultWriters))
	return &Allocator{store: store, cfg: cfg, log: cfg.Logger}
}

// Request asks for one allocation run.
type Request struct {
	Campaign string `json:"campaign"`
	Window   string `json:"window"`
	DryRun   bool   `json:"dry_run"`
	Policy   Policy `json:"policy"`
	// Wait waits for another allocation of the campaign to finish instead
	// of failing with ErrBusy.
	Wait bool `json:"wait,omitempty"`
	// Progress, when set, is called as registrations are written (a dry
	// run: planned).
	Progress func(done, total int) `json:"-"`
}

// CommitSeed commits a fresh random seed for a window's lottery, or
// returns the one already committed: a seed is never replaced. Call it
// before the window closes, and publish the hash.
func (a *Allocator) CommitSeed(ctx context.Context, campaignID, window string) (Commitment, error) {
	c, err := a.store.Campaign(ctx, campaignID)
	if err != nil {
		return Commitment{}, fmt.Errorf("commit seed: %w", err)
	}
	if _, ok := c.Window(window); !ok {
		return Commitment{}, fmt.Errorf("commit seed: window %q of %s: %w", window, campaignID, ErrUnknownWindow)
	}
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(a.cfg.Rand, seed); err != nil {
		return Commitment{}, fmt.Errorf("commit seed: random: %w", err)
	}
	cm, err := a.store.CommitSeed(ctx, campaignID, window, seed, a.cfg.Now())
	if err != nil {
		return Commitment{}, fmt.Errorf("commit seed: %w", err)
	}
	return cm, nil
}

// Job is a run that has started: it holds the campaign's allocation lock
// until Execute returns (or Abandon is called).
type Job struct {
	a       *Allocator
	rec     RunRecord
	req     Request
	c       *campaign.Campaign
	window  campaign.Window
	seed    Seed
	round   *Round // the window's frozen input, nil before the close
	resumed bool
	release func()
}

// ID is the run's id.
func (j *Job) ID() int64 { return j.rec.ID }

// Resumed reports whether the job resumes an interrupted run.
func (j *Job) Resumed() bool { return j.resumed }

// Run allocates: Begin, then Execute.
func (a *Allocator) Run(ctx context.Context, req Request) (Result, error) {
	j, err := a.Begin(ctx, req)
	if err != nil {
		return Result{}, err
	}
	return j.Execute(ctx)
}

// Begin checks the request, takes the campaign's allocation lock and
// records the run (or picks up the interrupted one it resumes). The caller
// must call Execute (or Abandon) to release the lock.
func (a *Allocator) Begin(ctx context.Context, req Request) (*Job, error) {
	pol, err := ParsePolicy(string(req.Policy))
	if err != nil {
		return nil, err
	}
	req.Policy = pol
	c, err := a.store.Campaign(ctx, req.Campaign)
	if err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	w, ok := c.Window(req.Window)
	if !ok {
		return nil, fmt.Errorf("allocate: window %q of %s: %w", req.Window, req.Campaign, ErrUnknownWindow)
	}
	release, err := a.store.Lock(ctx, req.Campaign, req.Wait)
	if err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	j := &Job{a: a, req: req, c: c, window: w, release: release}
	if err := j.begin(ctx); err != nil {
		release()
		return nil, fmt.Errorf("allocate: %w", err)
	}
	return j, nil
}

func (j *Job) begin(ctx context.Context) error {
	st, req := j.a.store, j.req
	prev, interrupted, err := st.InterruptedRun(ctx, req.Campaign)
	if err != nil {
		return err
	}
	if interrupted && (req.DryRun || prev.Window != req.Window || prev.Policy != req.Policy) {
		return &InterruptedError{Run: prev}
	}
	if err := st.AbandonDryRuns(ctx, req.Campaign, j.a.cfg.Now()); err != nil {
		return err
	}
	if req.Policy == PolicyLottery {
		if j.seed, err = st.Seed(ctx, req.Campaign, req.Window); err != nil {
			return err
		}
	}
	round, err := j.a.roundOf(ctx, req.Campaign, j.window)
	switch {
	case err != nil:
		return err
	case round == nil:
	case interrupted && prev.StartedAt.Before(round.FrozenAt):
		// Started before the freeze: it resumes with what it saw then.
	default:
		j.round = round
	}
	if interrupted {
		j.rec, j.resumed = prev, true
		j.frozen(prev.Bound)
		j.a.log.Info("resuming interrupted allocation", slog.Int64("run", prev.ID), slog.String("campaign", prev.Campaign),
			slog.String("window", prev.Window), slog.Int("done", prev.Done), slog.Int("total", prev.Total))
		return nil
	}
	rec := RunRecord{Campaign: req.Campaign, Window: req.Window, Policy: req.Policy,
		DryRun: req.DryRun, SeedHash: j.seed.Hash, StartedAt: j.a.cfg.Now()}
	if j.round != nil {
		rec.Frozen, rec.Input = true, j.round.Input
		if n := len(rec.Input); n > 0 {
			rec.Bound = rec.Input[n-1]
		}
	}
	j.rec, err = st.CreateRun(ctx, rec)
	j.frozen(j.rec.Bound)
	return err
}

// frozen hands the job's round, if any, to its run record: a run's bound is
// the highest id of the frozen input it draws over.
func (j *Job) frozen(bound int64) {
	if j.round == nil {
		return
	}
	j.rec.Frozen, j.rec.Input = true, j.round.Input
	if n := len(j.round.Input); n > 0 && j.round.Input[n-1] != bound {
		j.a.log.Warn("run bound differs from its frozen input", slog.Int64("run", j.rec.ID), slog.Int64("bound", bound))
	}
}

// Abandon releases a job that will not be executed; its run stays
// "running" and is resumed (a real run) or abandoned (a dry run) by the
// next run of the campaign.
func (j *Job) Abandon() {
	if j.release != nil {
		j.release()
		j.release = nil
	}
}

// Execute plans the run and, unless it is a dry run, writes it; then it
// releases the lock. Cancelling ctx stops a real run between chunks and
// leaves it to be resumed.
func (j *Job) Execute(ctx context.Context) (Result, error) {
	defer j.Abandon()
	started := j.a.cfg.Now()
	res, err := j.execute(ctx)
	now := j.a.cfg.Now()
	if err != nil {
		if ctx.Err() != nil && !j.rec.DryRun {
			// An interruption, not a failure: the next run resumes it.
			return res, fmt.Errorf("allocate: run %d interrupted: %w", j.rec.ID, err)
		}
		if ferr := j.a.store.FinishRun(context.WithoutCancel(ctx), j.rec.ID, StateFailed, nil, err.Error(), now); ferr != nil {
			j.a.log.Error("record failed run", slog.Int64("run", j.rec.ID), slog.Any("err", ferr))
		}
		return res, fmt.Errorf("allocate: run %d: %w", j.rec.ID, err)
	}
	res.Seconds = now.Sub(started).Seconds()
	body, err := json.Marshal(res)
	if err != nil {
		return res, fmt.Errorf("allocate: encode result: %w", err)
	}
	if err := j.a.store.FinishRun(ctx, j.rec.ID, StateDone, body, "", now); err != nil {
		return res, fmt.Errorf("allocate: %w", err)
	}
	j.a.log.Info("allocation finished", slog.Int64("run", j.rec.ID), slog.Bool("dry_run", j.rec.DryRun),
		slog.Int("registrations", res.Registrations), slog.Int("assigned", res.Assigned), slog.Int("unassigned", res.Unassigned),
		slog.Float64("seconds", res.Seconds))
	return res, nil
}

func (j *Job) execute(ctx context.Context) (Result, error) {
	st := j.a.store
	t0 := time.Now()
	snap, err := st.Snapshot(ctx, j.rec)
	if err != nil {
		return Result{}, err
	}
	// The frozen input's ids have chosen the snapshot's registrations: the
	// run has no more use for them.
	j.rec.Input = nil
	if j.round != nil {
		j.round.Input = nil
	}
	t1 := time.Now()
	regs := snap.Registrations
	var order []int
	if j.rec.Policy == PolicyLottery {
		order = DrawOrder(j.seed.Value, regs)
	} else {
		order = arrivalOrder(regs)
	}
	progress := func(done, total int) {
		if j.req.Progress != nil {
			j.req.Progress(done, total)
		}
	}
	var planProgress func(int)
	if j.rec.DryRun {
		planProgress = func(n int) { progress(n, len(regs)) }
	}
	plan := Plan(&snap.Inventory, regs, order, j.maxDistanceKm(), planProgress)
	res := summarize(&snap.Inventory, regs, order, plan)
	res.RunID, res.Campaign, res.Window, res.Policy, res.DryRun, res.Resumed = j.rec.ID, j.rec.Campaign, j.rec.Window, j.rec.Policy, j.rec.DryRun, j.resumed
	res.Bound = j.rec.Bound
	if j.rec.Policy == PolicyLottery {
		res.SeedHash = j.seed.Hash
		res.SeedCommittedAt = &j.seed.CommittedAt
		before := j.seed.CommittedAt.Before(j.window.Closes)
		res.SeedCommittedBeforeClose = &before
	}
	if j.round != nil {
		res.InputHash, res.InputFrozenAt = j.round.InputHash, &j.round.FrozenAt
	}
	t2 := time.Now()
	if j.rec.DryRun {
		progress(len(regs), len(regs))
		return res, nil
	}
	if j.rec.Policy == PolicyLottery && j.round != nil {
		// Before the first chunk: what the round file publishes as the
		// inventory this run planned against.
		if err := st.RecordRoundRun(ctx, j.rec.Campaign, j.rec.Window, j.rec.ID, &snap.Inventory, j.maxDistanceKm()); err != nil {
			return res, err
		}
	}
	// Writing needs only two marks of each registration: the rest of
	// them, and the draw order, can go before the writes allocate.
	marks := markWrites(regs, order)
	snap.Registrations, regs, order = nil, nil, nil
	if err := j.write(ctx, &snap.Inventory, plan, marks); err != nil {
		return res, err
	}
	j.a.log.Debug("allocation timings", slog.Int64("run", j.rec.ID), slog.Duration("snapshot", t1.Sub(t0)),
		slog.Duration("plan", t2.Sub(t1)), slog.Duration("write", time.Since(t2)))
	if j.rec.Policy == PolicyLottery {
		if err := st.RevealSeed(ctx, j.rec.Campaign, j.rec.Window, j.a.cfg.Now()); err != nil {
			return res, err
		}
		res.Seed = hex.EncodeToString(j.seed.Value)
	}
	return res, nil
}

// What write needs of a registration, in draw order.
const (
	markWritten       uint8 = 1 << iota // Registration.Written
	markWasUnassigned                   // Registration.WasUnassigned
)

// markWrites is, per outcome of a plan over regs in order, the marks of
// its registration.
func markWrites(regs []Registration, order []int) []uint8 {
	marks := make([]uint8, len(order))
	for k, i := range order {
		if regs[i].Written {
			marks[k] |= markWritten
		}
		if regs[i].WasUnassigned {
			marks[k] |= markWasUnassigned
		}
	}
	return marks
}

// write writes the plan in chunks, skipping what a resumed run wrote
// already (marks, per outcome); each chunk is one transaction. Writers
// work in parallel on disjoint clinics (unassigned registrations are split
// by id), so that no two transactions ever touch the same slot or
// registration rows.
func (j *Job) write(ctx context.Context, inv *Inventory, plan []Outcome, marks []uint8) error {
	done := 0
	for _, m := range marks {
		if m&markWritten != 0 {
			done++
		}
	}
	total := len(plan)
	if err := j.a.store.SetTotal(ctx, j.rec.ID, total, done); err != nil {
		return err
	}
	var mu sync.Mutex
	report := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		done += n
		if j.req.Progress != nil {
			j.req.Progress(done, total)
		}
	}
	report(0)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	writers := j.a.cfg.Writers
	queues := make([]chan Chunk, writers)
	var wg sync.WaitGroup
	for w := range queues {
		queues[w] = make(chan Chunk, 1)
		wg.Go(func() {
			for c := range queues[w] {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := j.a.store.WriteChunk(ctx, j.rec, c); err != nil {
					cancel(err)
					continue
				}
				report(len(c.Assignments) + len(c.Unassigned))
			}
		})
	}
	pending := make([]Chunk, writers)
	send := func(w int) {
		if len(pending[w].Assignments)+len(pending[w].Unassigned) == 0 {
			return
		}
		select {
		case queues[w] <- pending[w]:
		case <-ctx.Done():
		}
		pending[w] = Chunk{}
	}
	for k, o := range plan {
		if marks[k]&markWritten != 0 || ctx.Err() != nil {
			continue
		}
		var w int
		if o.Assigned() {
			c, day, band := inv.slotOf(int(o.Slot))
			w = c % writers
			pending[w].Assignments = append(pending[w].Assignments, Assignment{Registration: o.Registration,
				Clinic: inv.Clinics[c].ID, Day: inv.Start.AddDate(0, 0, day), Band: band, WasUnassigned: marks[k]&markWasUnassigned != 0})
		} else {
			w = int(o.Registration % int64(writers))
			pending[w].Unassigned = append(pending[w].Unassigned, Unassigned{Registration: o.Registration, Reason: o.Reason()})
		}
		if len(pending[w].Assignments)+len(pending[w].Unassigned) >= j.a.cfg.ChunkSize {
			send(w)
		}
	}
	for w := range pending {
		send(w)
		close(queues[w])
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// slotOf splits a slot index into clinic, day and band.
func (inv *Inventory) slotOf(slot int) (clinic, day, band int) {
	band = slot % inv.Bands
	day = (slot / inv.Bands) % inv.Days
	clinic = slot / (inv.Bands * inv.Days)
	return
}

// Status reads a run's record: its progress and, once done, its result;
// prereg.ErrNotFound when there is no such run.
func (a *Allocator) Status(ctx context.Context, id int64) (RunRecord, error) {
	r, err := a.store.Run(ctx, id)
	if err != nil {
		return RunRecord{}, fmt.Errorf("read run %d: %w", id, err)
	}
	return r, nil
}
