package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/world"
)

// ScaleStageNames are the pipeline's stages in the order the scale benchmark
// runs them, one after another, each in a process of its own.
var ScaleStageNames = []string{"intake", "verify", "dedupe", "allocate", "notify"}

// ScaleOptions configure Scale.
type ScaleOptions struct {
	// ServerCommand is the prereg binary (and any leading arguments) the
	// stages run as: `serve --roles …`, `lottery commit`, `allocate`;
	// empty: this program, which is prereg.
	ServerCommand []string
	Sizes         []int   // submissions per run, one fresh world each
	PerPerson     float64 // submissions per person the population is sized for
	Seed          int64
	Connections   int  // closed-loop connections of the load generator
	Keep          bool // keep each run's database
	// StageTimeout bounds one stage's wait for its work to be done
	// without progress (a stall fails the run instead of hanging it).
	StageTimeout time.Duration
}

// Flags defines the options' flags with their defaults.
func (o *ScaleOptions) Flags(fs *flag.FlagSet) {
	o.Sizes = []int{250_000, 1_000_000, 4_000_000}
	fs.Var(sizesFlag{&o.Sizes}, "sizes", "submissions of each run, comma-separated (a fresh database and JetStream each)")
	fs.Float64Var(&o.PerPerson, "per-person", 2.5, "submissions per person (the population is submissions ÷ this)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the population and the surge")
	fs.IntVar(&o.Connections, "connections", 64, "closed-loop connections of the load generator")
	fs.BoolVar(&o.Keep, "keep", false, "keep each run's database (their names are printed)")
	fs.DurationVar(&o.StageTimeout, "stall", 2*time.Minute, "fail a stage whose work stops moving for this long")
}

// Check refuses options the benchmark cannot run with.
func (o *ScaleOptions) Check() error {
	if len(o.Sizes) == 0 {
		return errors.New("--sizes: at least one size")
	}
	for _, n := range o.Sizes {
		if n < 1000 {
			return fmt.Errorf("--sizes: want at least 1000 submissions per run, got %d", n)
		}
	}
	if !(o.PerPerson >= 1) || o.Connections < 1 || o.StageTimeout <= 0 {
		return errors.New("want --per-person >= 1, --connections >= 1 and --stall > 0")
	}
	return nil
}

// sizesFlag is a comma-separated list of sizes.
type sizesFlag struct{ p *[]int }

func (f sizesFlag) String() string {
	if f.p == nil {
		return ""
	}
	parts := make([]string, len(*f.p))
	for i, n := range *f.p {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (f sizesFlag) Set(v string) error {
	var out []int
	for part := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.ReplaceAll(part, "_", "")))
		if err != nil {
			return fmt.Errorf("size %q: %w", part, err)
		}
		out = append(out, n)
	}
	*f.p = out
	return nil
}

// ScaleResult is the scale benchmark's output; its JSON keys are the
// ones docs/BENCHMARKS.md names.
type ScaleResult struct {
	Scale []ScaleRun `json:"scale"`
	// CostGrowth is CPU per submission at the largest size over the same
	// at the smallest; RSSGrowth the pipeline's peak resident memory
	// likewise.
	CostGrowth float64 `json:"cost_growth"`
	RSSGrowth  float64 `json:"rss_growth"`
	NumCPU     int     `json:"num_cpu"`
}

// ScaleRun is one size's run.
type ScaleRun struct {
	Submissions   int `json:"submissions"`
	Population    int `json:"population"`
	Accepted      int `json:"accepted"`
	Registrations int `json:"registrations"`
	Appointments  int `json:"appointments"`
	// Seconds is the wall time from the first stage's start to the last
	// stage's end; EndToEndPerS is submissions over it.
	Seconds      float64 `json:"seconds"`
	EndToEndPerS float64 `json:"end_to_end_per_s"`
	// CPUSPer1k is the pipeline's CPU seconds (its processes, the
	// PostgreSQL backends serving this run's database and the JetStream
	// server) per 1,000 submissions; PGCPUSPer1k and JSCPUSPer1k are the
	// PostgreSQL and JetStream parts of it.
	CPUSPer1k   float64 `json:"cpu_s_per_1k"`
	PGCPUSPer1k float64 `json:"pg_cpu_s_per_1k"`
	JSCPUSPer1k float64 `json:"js_cpu_s_per_1k"`
	// PeakRSSMiB is the largest peak resident memory of a pipeline
	// process (each stage is one); JSPeakRSSMiB the JetStream server's.
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	JSPeakRSSMiB float64 `json:"js_peak_rss_mib"`
	// The simulated world (load generator, identity providers, SMS
	// gateway) is the benchmark's own process: its CPU and peak memory,
	// apart from the pipeline's.
	WorldCPUSPer1k  float64 `json:"world_cpu_s_per_1k"`
	WorldPeakRSSMiB float64 `json:"world_peak_rss_mib"`
	// Bytes on disk per submission: the database at the end of the run
	// (pg_database_size) and JetStream's store folder at its fullest.
	PGBytesPerSubmission float64     `json:"pg_bytes_per_submission"`
	JSBytesPerSubmission float64     `json:"js_bytes_per_submission"`
	Stages               ScaleStages `json:"stages"`
	// SMSSentSeconds is when, from notify's start, the gateway had every
	// SMS at its handsets; the notify stage ends when the gateway's
	// delivery reports for them are recorded too.
	SMSSentSeconds float64 `json:"sms_sent_seconds"`
	// Autovacuum says who vacuumed and analyzed the run's tables: the
	// server, or (where the server's autovacuum is off) the benchmark,
	// with autovacuum's default thresholds; its CPU is PostgreSQL's either
	// way.
	Autovacuum string `json:"autovacuum"`
	Database   string `json:"database,omitempty"` // with --keep
}

// ScaleStages are the stages' figures, by stage.
type ScaleStages struct {
	Intake   ScaleStage `json:"intake"`
	Verify   ScaleStage `json:"verify"`
	Dedupe   ScaleStage `json:"dedupe"`
	Allocate ScaleStage `json:"allocate"`
	Notify   ScaleStage `json:"notify"`
}

func (s *ScaleStages) byName(name string) *ScaleStage {
	switch name {
	case "intake":
		return &s.Intake
	case "verify":
		return &s.Verify
	case "dedupe":
		return &s.Dedupe
	case "allocate":
		return &s.Allocate
	default:
		return &s.Notify
	}
}

// ScaleStage is one stage of one run: from its process's start to its
// work done, the process's CPU (user and system, start-up and shutdown
// included) and the PostgreSQL backends' and the JetStream server's CPU
// meanwhile.
type ScaleStage struct {
	Seconds     float64 `json:"seconds"`
	CPUSPer1k   float64 `json:"cpu_s_per_1k"`
	PGCPUSPer1k float64 `json:"pg_cpu_s_per_1k"`
	JSCPUSPer1k float64 `json:"js_cpu_s_per_1k"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
}

// Scale runs the whole pipeline at each size on a fresh world: intake,
// then verify, dedupe, allocation and notify, each stage a `prereg
// serve` (or CLI) process of its own that runs until its work is done, so
// that each stage's wall time, CPU and memory are its own.
func Scale(ctx context.Context, s Setup, o ScaleOptions) (*ScaleResult, error) {
	if len(o.ServerCommand) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench scale: %w", err)
		}
		o.ServerCommand = []string{self}
	}
	out := &ScaleResult{NumCPU: runtime.NumCPU()}
	for _, n := range o.Sizes {
		run, err := scaleRun(ctx, s, o, n)
		if err != nil {
			return nil, fmt.Errorf("%d submissions: %w", n, err)
		}
		out.Scale = append(out.Scale, *run)
	}
	first, last := out.Scale[0], out.Scale[len(out.Scale)-1]
	out.CostGrowth = round3(ratio(last.CPUSPer1k, first.CPUSPer1k))
	out.RSSGrowth = round3(ratio(last.PeakRSSMiB, first.PeakRSSMiB))
	return out, nil
}

// RunScaleJetStream runs the scale benchmark's JetStream server, embedded
// as `prereg demo` embeds it, with its store in dir, until ctx ends; it
// writes "ready URL" to ready once it serves. It is what `prereg bench
// scale-jetstream` runs, so that the server's CPU and memory are measured
// apart from the pipeline's processes and from the simulated world.
func RunScaleJetStream(ctx context.Context, dir string, ready io.Writer) error {
	emb, err := stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: -1})
	if err != nil {
		return err
	}
	defer emb.Shutdown()
	fmt.Fprintln(ready, "ready "+emb.ClientURL())
	<-ctx.Done()
	return nil
}

// scaleWorld is one run's world and the environment of its stages.
type scaleWorld struct {
	s    Setup
	o    ScaleOptions
	w    *world.World
	n    int
	addr string   // every stage's listen address, in turn
	env  []string // every stage's environment
	pgc  *pgCPU
	// js is the JetStream server's process, storing in jsDir.
	js    *stageProc
	jsDir string
	// jsDisk is the store folder's largest size.
	jsDisk int64
}

func scaleRun(ctx context.Context, s Setup, o ScaleOptions, n int) (*ScaleRun, error) {
	s.progress("scale: %d submissions", n)
	resetPeakRSS(0)
	worldCPU0 := selfCPU()
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	jsDir, err := os.MkdirTemp("", "prereg-scale-js-")
	if err != nil {
		return nil, fmt.Errorf("jetstream store: %w", err)
	}
	defer os.RemoveAll(jsDir)
	jsProc, natsURL, err := startJetStream(ctx, s, o, jsDir)
	if err != nil {
		return nil, err
	}
	defer jsProc.stop()
	start := time.Now()
	w, err := world.Start(ctx, world.Options{
		DatabaseURL: s.DatabaseURL, NATSURL: natsURL, Logger: s.logger(), Addr: addr, Elsewhere: true, Keep: o.Keep,
		Clinics: max(300, n/100), Submissions: n, Seed: o.Seed, Now: start,
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	sw := &scaleWorld{s: s, o: o, w: w, n: n, addr: addr, js: jsProc, jsDir: jsDir}
	sw.env = append(cleanEnv(),
		"DATABASE_URL="+w.DB.URL,
		"NATS_URL="+natsURL,
		"PREREG_HMAC_KEY=scale:"+keys.Random(32),
		"PREREG_ENC_KEY=scale:"+keys.Random(32),
		"PREREG_ADMIN_TOKENS=operator:"+keys.Random(16)+",auditor:"+keys.Random(16),
		// The load generator stands for the citizens' network behind one
		// trusted proxy, as in the demo.
		"PREREG_TRUSTED_PROXIES=127.0.0.0/8",
		// The provider's contract, not the pipeline, sets this ceiling in
		// production; here it must not be what is measured.
		"PREREG_VERIFY_CAMPAIGN_CALLS=1000000",
		"PREREG_SMS_URL="+w.GatewayURL,
		"PREREG_SMS_SECRET="+string(w.WebhookSecret),
		"PREREG_SMS_RATE=5000",
		"PREREG_SMS_CONCURRENCY=32",
		"PREREG_LOG_LEVEL=warn",
	)
	if sw.pgc, err = newPGCPU(ctx, w.DB.URL, w.DB.Name); err != nil {
		return nil, err
	}
	defer sw.pgc.close()
	var autovacuum string
	if err := w.Pool.QueryRow(ctx, `SELECT current_setting('autovacuum')`).Scan(&autovacuum); err != nil {
		return nil, fmt.Errorf("autovacuum setting: %w", err)
	}
	if autovacuum != "on" {
		// A production server vacuums and analyzes the tables the surge
		// fills; without that, plans made on no statistics and queue
		// indexes full of dead entries would be measured instead.
		s.progress("  the server's autovacuum is off: the benchmark does its work, every %s", autovacuumNaptime)
		stop := startAutovacuum(ctx, w.Pool, s)
		defer stop()
	}

	c := w.Campaign
	people := max(sim.PeopleFor(n, c, start), int(float64(n)/o.PerPerson))
	pop, err := sim.NewPopulation(o.Seed, people, c.Cohort)
	if err != nil {
		return nil, err
	}
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: n, Seed: o.Seed, Campaign: c, Providers: w.IdPs, Now: start})
	if err != nil {
		return nil, err
	}
	run := &ScaleRun{Submissions: n, Population: people, Autovacuum: map[bool]string{true: "server", false: "benchmark"}[autovacuum == "on"]}
	if o.Keep {
		run.Database = w.DB.URL
	}

	t0 := time.Now()
	// intake: the surge through the HTTP intake, nothing consuming yet.
	err = sw.stage(ctx, run, "intake", []string{"serve", "--roles", "intake"}, func(ctx context.Context) error {
		s.progress("  intake: sending %d submissions to %s", n, w.BaseURL)
		load, err := sim.RunLoad(ctx, surge.Submissions, sim.LoadConfig{
			Target: w.BaseURL, Connections: o.Connections, Duration: 24 * time.Hour,
			Progress: progressEvery(s, "  intake", n),
		})
		if err != nil {
			return err
		}
		// A retried submission keeps its receipt (its idempotency key):
		// count receipts, as the stream does.
		receipts := map[string]struct{}{}
		for _, a := range load.Answers {
			if a.Status == http.StatusAccepted {
				receipts[a.Receipt] = struct{}{}
			}
		}
		run.Accepted = len(receipts)
		s.progress("  intake: %d answered in %.0fs, %d accepted, statuses %v", load.Sent, load.Elapsed.Seconds(), run.Accepted, load.ByStatus)
		return nil
	})
	if err != nil {
		return nil, err
	}
	surge = nil // the world's memory: the surge is sent
	if err := sw.streamBytes(ctx); err != nil {
		return nil, err
	}
	// verify: until the submitted stream's consumer has nothing left.
	if err := sw.stage(ctx, run, "verify", []string{"serve", "--roles", "verify"}, func(ctx context.Context) error {
		return sw.drained(ctx, "verify", stream.Submitted)
	}); err != nil {
		return nil, err
	}
	// dedupe: until the verified stream's consumer has nothing left and
	// every accepted intent has its decision.
	if err := sw.stage(ctx, run, "dedupe", []string{"serve", "--roles", "dedupe"}, func(ctx context.Context) error {
		if err := sw.drained(ctx, "dedupe", stream.Verified); err != nil {
			return err
		}
		return sw.until(ctx, "dedupe", "decisions", func(ctx context.Context) (int, error) {
			return sw.count(ctx, `SELECT count(*) FROM decisions WHERE campaign = $1`)
		}, run.Accepted)
	}); err != nil {
		return nil, err
	}
	if err := sw.streamBytes(ctx); err != nil {
		return nil, err
	}
	// allocate: each window's lottery, by the CLI.
	if err := sw.allocate(ctx, run); err != nil {
		return nil, err
	}
	// notify: until every appointment's SMS is delivered or failed, by
	// the gateway's reports to the admin role.
	if err := sw.stage(ctx, run, "notify", []string{"serve", "--roles", "notify,admin"}, func(ctx context.Context) error {
		t := time.Now()
		return sw.until(ctx, "notify", "SMS reported", func(ctx context.Context) (int, error) {
			if run.SMSSentSeconds == 0 && w.Gateway.Stats().HandsetDeliveries >= run.Appointments {
				run.SMSSentSeconds = round1(time.Since(t).Seconds())
			}
			return sw.count(ctx, `SELECT count(*) FROM outbox WHERE campaign = $1 AND state IN ('delivered', 'failed')`)
		}, run.Appointments)
	}); err != nil {
		return nil, err
	}
	wall := time.Since(t0).Seconds()

	if run.Registrations, err = sw.count(ctx, `SELECT count(*) FROM registrations WHERE campaign = $1`); err != nil {
		return nil, err
	}
	var pgBytes int64
	if err := w.Pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&pgBytes); err != nil {
		return nil, fmt.Errorf("database size: %w", err)
	}
	k := float64(n) / 1000
	run.Seconds = round1(wall)
	run.EndToEndPerS = round1(float64(n) / wall)
	var cpu, pg, jsc float64
	for _, name := range ScaleStageNames {
		st := run.Stages.byName(name)
		cpu += st.CPUSPer1k * k
		pg += st.PGCPUSPer1k * k
		jsc += st.JSCPUSPer1k * k
		run.PeakRSSMiB = max(run.PeakRSSMiB, st.PeakRSSMiB)
	}
	run.CPUSPer1k, run.PGCPUSPer1k, run.JSCPUSPer1k = round3(cpu/k), round3(pg/k), round3(jsc/k)
	jsProc.sampleRSS()
	run.JSPeakRSSMiB = round1(float64(jsProc.hwm.Load()) / 1024)
	run.WorldCPUSPer1k = round3((selfCPU() - worldCPU0).Seconds() / k)
	run.WorldPeakRSSMiB = round1(float64(peakRSS(0)) / (1 << 20))
	run.PGBytesPerSubmission = round1(float64(pgBytes) / float64(n))
	run.JSBytesPerSubmission = round1(float64(sw.jsDisk) / float64(n))
	s.progress("  done: %.0f submissions/s end to end, %.3f CPU s per 1,000, pipeline peak %.0f MiB", run.EndToEndPerS, run.CPUSPer1k, run.PeakRSSMiB)
	return run, nil
}

// stage runs one stage's process, waits until it answers /readyz, runs
// work, and stops it; the stage's seconds run from the process's start to
// the end of work.
func (sw *scaleWorld) stage(ctx context.Context, run *ScaleRun, name string, args []string, work func(context.Context) error) error {
	sw.s.progress("  %s: starting prereg %s", name, strings.Join(args, " "))
	pg0, js0 := sw.pgc.total(ctx), sw.jsCPU()
	t0 := time.Now()
	p, err := sw.start(append(args, "--addr", sw.addr, "--shutdown-grace", "30s"))
	if err != nil {
		return err
	}
	if err := p.waitReady(ctx, "http://"+sw.addr+"/readyz", time.Minute); err != nil {
		p.stop()
		return fmt.Errorf("%s: %w", name, err)
	}
	werr := work(ctx)
	secs := time.Since(t0).Seconds()
	use, err := p.stop()
	if werr != nil {
		return fmt.Errorf("%s: %w%s", name, werr, p.tail())
	}
	if err != nil {
		return fmt.Errorf("%s: %w%s", name, err, p.tail())
	}
	sw.record(run, name, secs, use, sw.pgc.total(ctx)-pg0, sw.jsCPU()-js0)
	return nil
}

// allocate commits each window's lottery seed and allocates it, with the
// CLI, one process after another: the stage's figures are their sum.
func (sw *scaleWorld) allocate(ctx context.Context, run *ScaleRun) error {
	c := sw.w.Campaign
	sw.s.progress("  allocate: the lottery of each of %d windows", len(c.Windows))
	pg0, js0 := sw.pgc.total(ctx), sw.jsCPU()
	t0 := time.Now()
	var use usage
	for _, win := range c.Windows {
		for _, args := range [][]string{
			{"lottery", "commit", "--campaign", c.ID, "--window", win.ID},
			{"allocate", "--campaign", c.ID, "--window", win.ID, "--format", "json"},
		} {
			p, err := sw.start(args)
			if err != nil {
				return err
			}
			u, err := p.wait()
			if err != nil {
				return fmt.Errorf("allocate: prereg %s: %w%s", strings.Join(args, " "), err, p.tail())
			}
			use.cpu += u.cpu
			use.maxRSSKiB = max(use.maxRSSKiB, u.maxRSSKiB)
		}
	}
	secs := time.Since(t0).Seconds()
	sw.record(run, "allocate", secs, use, sw.pgc.total(ctx)-pg0, sw.jsCPU()-js0)
	var err error
	run.Appointments, err = sw.count(ctx, `SELECT count(*) FROM appointments WHERE campaign = $1`)
	return err
}

func (sw *scaleWorld) record(run *ScaleRun, name string, secs float64, use usage, pg, js time.Duration) {
	k := float64(sw.n) / 1000
	cpu := use.cpu + pg + js
	*run.Stages.byName(name) = ScaleStage{
		Seconds:     round1(secs),
		CPUSPer1k:   round3(cpu.Seconds() / k),
		PGCPUSPer1k: round3(pg.Seconds() / k),
		JSCPUSPer1k: round3(js.Seconds() / k),
		PeakRSSMiB:  round1(float64(use.maxRSSKiB) / 1024),
	}
	sw.s.progress("  %s: %.1fs, %.3f CPU s per 1,000 (PostgreSQL %.3f, JetStream %.3f), peak %.0f MiB", name, secs, cpu.Seconds()/k, pg.Seconds()/k, js.Seconds()/k, float64(use.maxRSSKiB)/1024)
}

func (sw *scaleWorld) count(ctx context.Context, query string) (int, error) {
	var k int
	if err := sw.pgc.query(ctx, query, []any{sw.w.Campaign.ID}, &k); err != nil {
		return 0, fmt.Errorf("count: %w", err)
	}
	return k, nil
}

// drained waits until the stream has a consumer and the consumers have
// nothing pending or unacknowledged.
func (sw *scaleWorld) drained(ctx context.Context, stage, name string) error {
	str, err := sw.w.JS.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	total := int(info.State.Msgs)
	return sw.until(ctx, stage, name+" consumed", func(ctx context.Context) (int, error) {
		left, seen := 0, false
		for ci := range str.ListConsumers(ctx).Info() {
			seen = true
			left += int(ci.NumPending) + ci.NumAckPending
		}
		if !seen {
			return 0, nil
		}
		return total - left, nil
	}, total)
}

// until polls done until it reaches want; it fails when the count stops
// moving for the stall timeout.
func (sw *scaleWorld) until(ctx context.Context, stage, what string, done func(context.Context) (int, error), want int) error {
	last, moved, shown := -1, time.Now(), time.Now()
	for {
		k, err := done(ctx)
		if err != nil {
			return err
		}
		if k >= want {
			return nil
		}
		if k != last {
			last, moved = k, time.Now()
		} else if time.Since(moved) > sw.o.StageTimeout {
			return fmt.Errorf("%s stuck at %d of %d for %s (%s)", what, k, want, sw.o.StageTimeout, sw.w.PipelineState(context.WithoutCancel(ctx)))
		}
		if time.Since(shown) >= 10*time.Second {
			sw.s.progress("  %s: %s %d of %d", stage, what, k, want)
			shown = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// streamBytes records the size of JetStream's store folder now (the
// pipeline's streams and verify's buckets), keeping the largest: the
// submitted stream is fullest after intake (verify's acknowledgements
// remove its messages), the verified one after dedupe.
func (sw *scaleWorld) streamBytes(ctx context.Context) error {
	var total int64
	err := filepath.WalkDir(sw.jsDir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("jetstream store: %w", err)
	}
	sw.jsDisk = max(sw.jsDisk, total)
	return nil
}

// jsCPU is the JetStream server's CPU time so far.
func (sw *scaleWorld) jsCPU() time.Duration {
	t, _ := procCPU(sw.js.cmd.Process.Pid)
	return t
}

// autovacuumNaptime is how often the benchmark's stand-in for autovacuum
// looks at the tables: shorter than the server's default minute, so that
// the stages of a small run get their tables analyzed too.
const autovacuumNaptime = 20 * time.Second

// startAutovacuum does autovacuum's work on the run's database until the
// returned stop is called: every naptime, VACUUM (ANALYZE) each table
// with more dead rows than 50 + 20 % of its live ones, and ANALYZE each
// with more changes since its last analyze than 50 + 10 % (autovacuum's
// default thresholds).
func startAutovacuum(ctx context.Context, pool *pgxpool.Pool, s Setup) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(autovacuumNaptime):
			}
			// Not other sessions' temporary tables (dedupe's staging).
			rows, err := pool.Query(ctx, `SELECT relid::regclass::text,
				    n_dead_tup > 50 + 0.2 * n_live_tup,
				    n_mod_since_analyze > 50 + 0.1 * n_live_tup
				FROM pg_stat_user_tables WHERE schemaname NOT LIKE 'pg\_temp\_%'`)
			if err != nil {
				continue
			}
			type job struct {
				table           string
				vacuum, analyze bool
			}
			jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job, error) {
				var j job
				return j, r.Scan(&j.table, &j.vacuum, &j.analyze)
			})
			if err != nil {
				continue
			}
			for _, j := range jobs {
				var err error
				switch {
				case j.vacuum:
					_, err = pool.Exec(ctx, `VACUUM (ANALYZE) `+j.table)
				case j.analyze:
					_, err = pool.Exec(ctx, `ANALYZE `+j.table)
				}
				if err != nil && ctx.Err() == nil {
					s.logger().Warn("bench scale: autovacuum's stand-in", slog.String("table", j.table), slog.Any("err", err))
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// progressEvery reports the load generator's progress every tenth of
// the surge.
func progressEvery(s Setup, prefix string, n int) func(int) {
	step := max(1, n/10)
	var mu sync.Mutex
	next := step
	return func(done int) {
		mu.Lock()
		defer mu.Unlock()
		if done >= next {
			next += step
			s.progress("%s: %d of %d answered", prefix, done, n)
		}
	}
}

// stageProc is one stage's process.
type stageProc struct {
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{}
	// hwm is the largest VmHWM read of the process (KiB). The kernel's
	// ru_maxrss cannot serve: a child forked from this process counts
	// this process's resident memory at the fork as its own.
	hwm atomic.Int64
}

// usage is what a process used over its life.
type usage struct {
	cpu       time.Duration
	maxRSSKiB int64
}

func (sw *scaleWorld) start(args []string) (*stageProc, error) {
	sc := sw.o.ServerCommand
	cmd := exec.Command(sc[0], append(slices.Clone(sc[1:]), args...)...)
	cmd.Env = sw.env
	return launch(cmd, sw.s.Stderr)
}

// startJetStream runs `prereg bench scale-jetstream` with its store in
// dir and returns it with its client URL.
func startJetStream(ctx context.Context, s Setup, o ScaleOptions, dir string) (*stageProc, string, error) {
	sc := o.ServerCommand
	cmd := exec.Command(sc[0], append(slices.Clone(sc[1:]), "bench", "scale-jetstream", "--store", dir)...)
	cmd.Env = cleanEnv()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, "", fmt.Errorf("jetstream: %w", err)
	}
	defer r.Close()
	cmd.Stdout = w
	p, err := launch(cmd, s.Stderr)
	w.Close()
	if err != nil {
		return nil, "", err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Scan()
		line <- sc.Text()
	}()
	select {
	case l := <-line:
		if url, ok := strings.CutPrefix(l, "ready "); ok {
			return p, url, nil
		}
		p.stop()
		return nil, "", fmt.Errorf("jetstream: said %q%s", l, p.tail())
	case <-ctx.Done():
		p.stop()
		return nil, "", ctx.Err()
	case <-time.After(time.Minute):
		p.stop()
		return nil, "", fmt.Errorf("jetstream: not ready after a minute%s", p.tail())
	}
}

// launch starts cmd, its output kept (the last of it, for errors) and
// copied to stderr when set, and follows its peak memory until it ends.
func launch(cmd *exec.Cmd, stderr io.Writer) (*stageProc, error) {
	p := &stageProc{cmd: cmd, log: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	var w io.Writer = p.log
	if stderr != nil {
		w = io.MultiWriter(p.log, stderr)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = p.log
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	go func() {
		for {
			p.sampleRSS()
			select {
			case <-p.done:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return p, nil
}

// sampleRSS reads the process's peak resident memory so far.
func (p *stageProc) sampleRSS() {
	if k := peakRSS(p.cmd.Process.Pid) >> 10; k > p.hwm.Load() {
		p.hwm.Store(k)
	}
}

// waitReady polls url until it answers 200.
func (p *stageProc) waitReady(ctx context.Context, url string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		if res, err := client.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready%s", p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready at %s after %s%s", url, limit, p.tail())
		}
	}
}

// stop asks the process to stop (SIGTERM), waits, and returns what it
// used.
func (p *stageProc) stop() (usage, error) {
	p.sampleRSS()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		return p.usage(), errors.New("did not stop within a minute of SIGTERM")
	}
	return p.usage(), nil
}

// wait waits for the process to end by itself.
func (p *stageProc) wait() (usage, error) {
	<-p.done
	if !p.cmd.ProcessState.Success() {
		return p.usage(), fmt.Errorf("exit %d", p.cmd.ProcessState.ExitCode())
	}
	return p.usage(), nil
}

func (p *stageProc) usage() usage {
	st := p.cmd.ProcessState
	return usage{cpu: st.UserTime() + st.SystemTime(), maxRSSKiB: p.hwm.Load()}
}

func (p *stageProc) tail() string {
	if t := p.log.String(); t != "" {
		return "; its last output:\n" + t
	}
	return ""
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = slices.Clone(t.buf[len(t.buf)-t.max:])
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// cleanEnv is this process's environment without what prereg reads, so
// that the stages run on the settings the benchmark gives them and the
// collector's defaults for their roles.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PREREG_") || strings.HasPrefix(k, "NATS_") || k == "DATABASE_URL" || k == "GOGC" || k == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freeAddr is a free loopback address for the stages to listen on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// pgCPU follows the CPU of the PostgreSQL backends connected to one
// database (client backends, autovacuum workers), read from /proc: a
// sampler keeps the last CPU time seen of each backend, so a backend that
// has exited still counts up to its last sample (pgCPUEvery at most
// missed). Its own connections, the sampler's and the benchmark's probes'
// (query), are left out with the parallel workers they lead: a probe that
// counts the decisions or the outbox every 250 ms scans tables that grow
// with the run, and that is the benchmark's cost, not the pipeline's.
type pgCPU struct {
	pool   *pgxpool.Pool
	dbName string

	mu     sync.Mutex
	seen   map[int]time.Duration // by pid
	stop   chan struct{}
	exited chan struct{}
}

const (
	// pgCPUApp names the sampler's and the probes' connections, which
	// are not counted.
	pgCPUApp = "prereg-bench-scale-probe"
	// pgCPUEvery is how often the backends' CPU is read: a backend that
	// lives shorter than this may go unseen.
	pgCPUEvery = 250 * time.Millisecond
)

func newPGCPU(ctx context.Context, url, dbName string) (*pgCPU, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres cpu sampler: %w", err)
	}
	cfg.MaxConns = 2 // the sampler's, and the probes' so that a slow one delays no sample
	cfg.ConnConfig.RuntimeParams["application_name"] = pgCPUApp
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres cpu sampler: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres cpu sampler: %w", err)
	}
	p := &pgCPU{pool: pool, dbName: dbName, seen: map[int]time.Duration{}, stop: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(pgCPUEvery):
				p.sample(context.Background())
			}
		}
	}()
	return p, nil
}

// sample reads each backend's CPU time.
func (p *pgCPU) sample(ctx context.Context) {
	rows, err := p.pool.Query(ctx, `SELECT a.pid FROM pg_stat_activity a
		WHERE a.datname = $1 AND a.application_name IS DISTINCT FROM $2
			AND NOT EXISTS (SELECT 1 FROM pg_stat_activity l WHERE l.pid = a.leader_pid AND l.application_name = $2)`,
		p.dbName, pgCPUApp)
	if err != nil {
		return
	}
	var pids []int
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			pids = append(pids, pid)
		}
	}
	rows.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pid := range pids {
		if t, ok := procCPU(pid); ok && t > p.seen[pid] {
			p.seen[pid] = t
		}
	}
}

// query runs one of the benchmark's own queries on the connection whose
// CPU is not counted.
func (p *pgCPU) query(ctx context.Context, sql string, args []any, dest ...any) error {
	return p.pool.QueryRow(ctx, sql, args...).Scan(dest...)
}

// total samples now and returns the CPU time of every backend seen.
func (p *pgCPU) total(ctx context.Context) time.Duration {
	p.sample(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	var t time.Duration
	for _, d := range p.seen {
		t += d
	}
	return t
}

func (p *pgCPU) close() {
	close(p.stop)
	<-p.exited
	p.pool.Close()
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// PrintScale writes the scale benchmark's table.
func PrintScale(w io.Writer, _ ScaleOptions, r *ScaleResult) {
	fmt.Fprintf(w, "prereg bench scale: the whole pipeline, one stage process after another (%d CPUs); world: load generator, providers, gateway\n\n", r.NumCPU)
	fmt.Fprintf(w, "%12s %8s %9s %8s %8s %8s %8s %8s %8s %10s %9s %8s\n", "submissions", "e2e/s", "cpu s/1k", "pg s/1k", "js s/1k", "rss MiB", "js MiB", "pg B/sub", "js B/sub", "world s/1k", "world MiB", "seconds")
	for _, run := range r.Scale {
		fmt.Fprintf(w, "%12d %8.0f %9.3f %8.3f %8.3f %8.0f %8.0f %8.0f %8.0f %10.3f %9.0f %8.0f\n", run.Submissions, run.EndToEndPerS, run.CPUSPer1k, run.PGCPUSPer1k, run.JSCPUSPer1k,
			run.PeakRSSMiB, run.JSPeakRSSMiB, run.PGBytesPerSubmission, run.JSBytesPerSubmission, run.WorldCPUSPer1k, run.WorldPeakRSSMiB, run.Seconds)
	}
	fmt.Fprintf(w, "\nper stage: seconds / CPU s per 1,000 submissions (of which PostgreSQL, JetStream) / peak MiB\n")
	fmt.Fprintf(w, "%12s", "submissions")
	for _, name := range ScaleStageNames {
		fmt.Fprintf(w, " %-34s", name)
	}
	fmt.Fprintln(w)
	for _, run := range r.Scale {
		fmt.Fprintf(w, "%12d", run.Submissions)
		for _, name := range ScaleStageNames {
			st := run.Stages.byName(name)
			fmt.Fprintf(w, " %-34s", fmt.Sprintf("%.0fs %.3f (%.3f, %.3f) %.0f", st.Seconds, st.CPUSPer1k, st.PGCPUSPer1k, st.JSCPUSPer1k, st.PeakRSSMiB))
		}
		fmt.Fprintln(w)
	}
	for _, run := range r.Scale {
		fmt.Fprintf(w, "%d submissions: %d accepted, %d registrations, %d appointments; every SMS at its handset %.0fs into notify, every report recorded %.0fs\n",
			run.Submissions, run.Accepted, run.Registrations, run.Appointments, run.SMSSentSeconds, run.Stages.Notify.Seconds)
	}
	fmt.Fprintf(w, "\ncost_growth %.3f (target <= 1.25), rss_growth %.3f (target <= 1.5)\n", r.CostGrowth, r.RSSGrowth)
	for _, run := range r.Scale {
		if run.Database != "" {
			fmt.Fprintf(w, "database kept: %s\n", run.Database)
		}
	}
}
