package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prereg/prereg/intake"
)

// IntakeResult is the result of `prereg bench intake`: the figures, and
// the settings they were taken with.
type IntakeResult struct {
	BareRPS          float64 `json:"bare_rps"`
	NaiveRPS         float64 `json:"naive_rps"`
	IntakeRPS        float64 `json:"intake_rps"`
	IntakeSyncedRPS  float64 `json:"intake_synced_rps"`
	IntakeP99MS      float64 `json:"intake_p99_ms"`
	RatioBare        float64 `json:"ratio_bare"`
	RatioNaive       float64 `json:"ratio_naive"`
	RatioNaiveSynced float64 `json:"ratio_naive_synced"`
	// IntakeSyncedGroupAvg is intake_synced's intents per publish (its
	// group commit), over the warm-up and every round.
	IntakeSyncedGroupAvg float64 `json:"intake_synced_group_avg"`
	// --bare-fasthttp: the bare handler on fasthttp, the server intake
	// runs on, so that intake's own cost shows apart from net/http's.
	BareFastRPS       float64 `json:"bare_fasthttp_rps,omitempty"`
	RatioBareFasthttp float64 `json:"ratio_bare_fasthttp,omitempty"`

	// The overload run (--overload-duration): intake alone on one core,
	// its capacity measured with the closed loop, then offered 1.5 times
	// that (the keys without a suffix) and 3 times that (_3x).
	OverloadCapacityRPS float64 `json:"overload_capacity_rps"`
	OverloadRun
	OverloadRun3x
	// OverloadConnections is the open-loop generator's connection count
	// (--overload-connections): one request at a time on each, as wrk2
	// does, with latencies counted from when each request was due.
	OverloadConnections int `json:"overload_connections,omitempty"`
	// OverloadServerCPUs and OverloadGeneratorCPUs are the CPUs the
	// server and the generator were pinned to ("": not pinned, on a
	// machine of one CPU).
	OverloadServerCPUs    string `json:"overload_server_cpus"`
	OverloadGeneratorCPUs string `json:"overload_generator_cpus"`
	// GeneratorCeilingRPS is what the generator, on its CPUs, gets
	// answered per second by a server on the server's CPU that refuses
	// every submission, over the open loop's connections in a closed
	// loop: the most the open loop can offer here.
	GeneratorCeilingRPS float64 `json:"overload_generator_ceiling_rps,omitempty"`
	// CPUPer202Micros and CPUPer503Micros are the server process's CPU
	// time per answer: in the capacity run (202s, and the odd refusal) and
	// in the generator's ceiling run (every answer a 503). They are what
	// an accepted intent and a refusal cost one core, the a and r of
	// docs/SCALING.md, and unlike rates they do not move with what else
	// the machine runs.
	CPUPer202Micros float64 `json:"overload_cpu_us_per_202,omitempty"`
	CPUPer503Micros float64 `json:"overload_cpu_us_per_503,omitempty"`
	// ExpectedGoodputRatio is the goodput ratio those costs allow at 1.5
	// times the capacity: the most one core can admit while it refuses
	// the rest, (1 − λ·r) / (a − r), over the capacity.
	ExpectedGoodputRatio float64 `json:"overload_expected_goodput_ratio,omitempty"`
	// RefusalCeilingRPS (--overload-server refuse): submissions per second
	// one core answers 503 when intake refuses them all.
	RefusalCeilingRPS float64 `json:"refusal_ceiling_rps,omitempty"`

	Modes       map[string]ModeSummary `json:"modes"`
	Rounds      int                    `json:"rounds"`
	DurationS   float64                `json:"duration_s"`
	Connections int                    `json:"connections"`
	NumCPU      int                    `json:"nproc"`
}

// OverloadRun is one open-loop run of the overload bench: intake on one core offered more than its capacity, and the refusal floor at the same rate.
type OverloadRun struct {
	// IntendedRPS is the rate the run meant to offer: 1.5 times the capacity
	// (or --overload-rate); 3 times, or 90 % of the generator's ceiling
	// when that is less.
	IntendedRPS float64 `json:"overload_intended_rps"`
	// OfferedRPS is the rate the generator sent at: requests sent during the run, per second.
	OfferedRPS float64 `json:"overload_offered_rps"`
	// GoodputRPS is 202s per second.
	GoodputRPS float64 `json:"overload_goodput_rps"`
	// AnsweredRPS is 202s per second (the older name of goodput).
	AnsweredRPS float64 `json:"overload_answered_rps"`
	// GoodputRatio is goodput / capacity.
	GoodputRatio float64 `json:"overload_goodput_ratio"`
	// Share503 is the share of answers that were 503.
	Share503 float64 `json:"overload_503_share"`
	// P99MS is p99 of every answer, from when its request was due.
	P99MS float64 `json:"overload_p99_ms"`
	// AcceptedP99MS is p99 of the 202s alone, from when each was due.
	AcceptedP99MS float64 `json:"overload_accepted_p99_ms"`
	// SendP99MS is p99 of every answer from its actual send: without the generator's own lag.
	SendP99MS float64 `json:"overload_send_p99_ms"`
	// Timeouts is requests unanswered 10 s after they were due.
	Timeouts int64 `json:"overload_timeouts"`
	// MaxRSSMiB is the intake process's peak resident memory during the run.
	MaxRSSMiB float64 `json:"overload_max_rss_mib"`
	// Other5xx is 5xx answers other than 503.
	Other5xx int64 `json:"overload_other_5xx"`
	// FloorOfferedRPS is the refusal floor's run: the rate sent.
	FloorOfferedRPS float64 `json:"overload_refuse_floor_offered_rps"`
	// FloorP99MS is the refusal floor's p99: the same open loop at the same intended rate against intake refusing every submission first thing.
	FloorP99MS float64 `json:"overload_refuse_floor_p99_ms"`
	// FloorTimeouts is the refusal floor's timeouts.
	FloorTimeouts int64 `json:"overload_refuse_floor_timeouts"`
}

// OverloadRun3x is an OverloadRun under the _3x keys: the run at 3 times the capacity.
type OverloadRun3x struct {
	IntendedRPS     float64 `json:"overload_intended_rps_3x"`
	OfferedRPS      float64 `json:"overload_offered_rps_3x"`
	GoodputRPS      float64 `json:"overload_goodput_rps_3x"`
	AnsweredRPS     float64 `json:"overload_answered_rps_3x"`
	GoodputRatio    float64 `json:"overload_goodput_ratio_3x"`
	Share503        float64 `json:"overload_503_share_3x"`
	P99MS           float64 `json:"overload_p99_ms_3x"`
	AcceptedP99MS   float64 `json:"overload_accepted_p99_ms_3x"`
	SendP99MS       float64 `json:"overload_send_p99_ms_3x"`
	Timeouts        int64   `json:"overload_timeouts_3x"`
	MaxRSSMiB       float64 `json:"overload_max_rss_mib_3x"`
	Other5xx        int64   `json:"overload_other_5xx_3x"`
	FloorOfferedRPS float64 `json:"overload_refuse_floor_offered_rps_3x"`
	FloorP99MS      float64 `json:"overload_refuse_floor_p99_ms_3x"`
	FloorTimeouts   int64   `json:"overload_refuse_floor_timeouts_3x"`
}

// ModeSummary is the medians of one server over the rounds.
type ModeSummary struct {
	RPS    float64 `json:"rps"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	Errors int64   `json:"errors"`
}

// IntakeModes are the servers compared, in the order each round runs them.
var IntakeModes = []string{"bare", "naive", "intake", "intake_synced"}

// IntakeOptions configure Intake.
type IntakeOptions struct {
	// ServerCommand runs a bench server in a process of its own: the
	// command line of `prereg bench intake-server` (RunIntakeServer), to
	// which the server's flags are appended.
	ServerCommand []string
	Duration      time.Duration // measured time of each mode in each round
	Connections   int           // closed-loop connections of the load generator
	Rounds        int           // rounds; 0: the overload run only
	// Overload is the length of the open-loop run at 1.5 times the
	// capacity (0 skips the overload run).
	Overload time.Duration
	// Overload3x is the length of the run at 3 times the capacity, after
	// it (0 skips it).
	Overload3x time.Duration
	// OverloadServer is the overload run's server: overload (intake),
	// bare, or refuse.
	OverloadServer      string
	ProfileDir          string  // CPU and heap profiles of each server, by mode
	BareFasthttp        bool    // also run the bare handler on fasthttp
	OverloadConnections int     // connections of the open-loop generator
	OverloadRate        float64 // 0: 1.5 times the measured capacity
	RefuseFloor         bool    // after the overload runs, the refusal floor at the same rates
}

// modes are the servers a round runs, in order.
func (o IntakeOptions) modes() []string {
	if o.BareFasthttp {
		return append(slices.Clone(IntakeModes), "bare_fasthttp")
	}
	return IntakeModes
}

// Intake compares intake, built by app as `prereg serve --roles intake`
// builds it, with a bare handler and the naive INSERT-per-request design,
// each server in a process of its own, in rounds; then offers 1.5 and 3
// times intake's capacity to intake alone on one core, the generator on
// the others.
func Intake(ctx context.Context, s Setup, o IntakeOptions) (*IntakeResult, error) {
	if len(o.ServerCommand) == 0 {
		return nil, errors.New("bench intake: no server command")
	}
	progress := s.progress
	bodies := benchBodies(20000)
	out := &IntakeResult{Modes: map[string]ModeSummary{}, Rounds: o.Rounds, DurationS: o.Duration.Seconds(), Connections: o.Connections, NumCPU: runtime.NumCPU()}
	progress("creating the bench's database…")
	dbURL, dropDB, err := intakeDatabase(ctx, s)
	if err != nil {
		return nil, err
	}
	defer dropDB()
	r := &intakeRun{s: s, o: o, dbURL: dbURL, bodies: bodies, out: out}
	if o.Rounds > 0 {
		if err := r.comparison(ctx, o.modes()); err != nil {
			return nil, err
		}
	}
	if o.Overload > 0 {
		progress("overload: intake alone with GOMAXPROCS=1, capacity first…")
		if err := r.overload(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// intakeRun is one run of the intake bench.
type intakeRun struct {
	s      Setup
	o      IntakeOptions
	dbURL  string
	bodies [][]byte
	out    *IntakeResult
	// serverCPUs is where the overload run's servers are pinned, while
	// this process is pinned to the others ("": not pinned).
	serverCPUs string
}

// PrintIntake writes an intake result for people.
func PrintIntake(w io.Writer, o IntakeOptions, b *IntakeResult) {
	fmt.Fprintf(w, "prereg bench intake: %d rounds × %.1fs per mode, %d connections, %d CPUs (medians over rounds)\n\n", b.Rounds, b.DurationS, b.Connections, b.NumCPU)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\treq/s\tp50 ms\tp99 ms\terrors\t")
	for _, m := range o.modes() {
		s := b.Modes[m]
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t\n", m, s.RPS, s.P50MS, s.P99MS, s.Errors)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nratio_bare (intake/bare)                 %.2f   (target >= 0.6)\n", b.RatioBare)
	fmt.Fprintf(w, "ratio_naive (intake/naive)               %.2f   (target >= 3)\n", b.RatioNaive)
	fmt.Fprintf(w, "ratio_naive_synced (intake_synced/naive) %.2f   (stretch >= 1; group commit: %.1f intents per publish)\n", b.RatioNaiveSynced, b.IntakeSyncedGroupAvg)
	if b.BareFastRPS > 0 {
		fmt.Fprintf(w, "ratio_bare_fasthttp (intake/bare_fasthttp) %.2f (no target: intake's own cost on its server)\n", b.RatioBareFasthttp)
	}
	if o.Overload > 0 {
		if b.RefusalCeilingRPS > 0 {
			fmt.Fprintf(w, "\nrefusal ceiling (intake refusing every submission, GOMAXPROCS=1): %.0f answers/s\n", b.RefusalCeilingRPS)
			return
		}
		pinned := "not pinned (one CPU)"
		if b.OverloadServerCPUs != "" {
			pinned = fmt.Sprintf("server on CPU %s, generator on CPU %s", b.OverloadServerCPUs, b.OverloadGeneratorCPUs)
		}
		fmt.Fprintf(w, "\noverload (intake GOMAXPROCS=1, %s, capacity %.0f req/s, %d open-loop connections; generator ceiling %.0f answers/s):\n",
			pinned, b.OverloadCapacityRPS, b.OverloadConnections, b.GeneratorCeilingRPS)
		if b.CPUPer202Micros > 0 {
			fmt.Fprintf(w, "  CPU per 202 %.1f µs, per 503 %.1f µs", b.CPUPer202Micros, b.CPUPer503Micros)
			if b.ExpectedGoodputRatio > 0 {
				fmt.Fprintf(w, ": one core can admit %.2f of its capacity at 1.5 × capacity", b.ExpectedGoodputRatio)
			}
			fmt.Fprintln(w)
		}
		printOverloadRun(w, "1.5 × capacity", o.Overload, b.OverloadRun, true)
		if o.Overload3x > 0 {
			printOverloadRun(w, "3 × capacity", o.Overload3x, OverloadRun(b.OverloadRun3x), false)
		}
	}
}

// printOverloadRun writes one overload run's figures and targets.
func printOverloadRun(w io.Writer, name string, d time.Duration, r OverloadRun, surge bool) {
	fmt.Fprintf(w, "  %s, %s: offered %.0f req/s (meant %.0f), 202 %.0f/s, goodput ratio %.2f", name, d, r.OfferedRPS, r.IntendedRPS, r.GoodputRPS, r.GoodputRatio)
	if surge {
		fmt.Fprintf(w, " (target >= 0.4)")
	}
	fmt.Fprintf(w, ", 503 share %.2f\n", r.Share503)
	fmt.Fprintf(w, "    p99 %.1f ms", r.P99MS)
	if surge {
		fmt.Fprintf(w, " (target <= 100)")
	} else {
		fmt.Fprintf(w, " (target <= floor + 50)")
	}
	fmt.Fprintf(w, ", 202s' p99 %.1f ms, from send %.1f ms; refusal floor p99 %.1f ms (offered %.0f req/s, timeouts %d)\n", r.AcceptedP99MS, r.SendP99MS, r.FloorP99MS, r.FloorOfferedRPS, r.FloorTimeouts)
	fmt.Fprintf(w, "    max RSS %.0f MiB (target <= 256), other 5xx %d, timeouts %d (target 0)\n", r.MaxRSSMiB, r.Other5xx, r.Timeouts)
}

// benchBodies are synthetic intents of about 300 bytes, all inside the
// bench campaign's open window (birth dates ending in 9), each from its own
// device.
func benchBodies(n int) [][]byte {
	out := make([][]byte, n)
	regions := []string{"11110", "11680", "26350", "41111", "50110"}
	for i := range n {
		b, _ := json.Marshal(intake.Request{
			Campaign:      "bench-intake",
			Provider:      "pass",
			IdentityToken: "eyJwIjoiYmVuY2gtcGVyc29uLSIsImIiOiIxOTkwLTA4LTE5In0." + fmt.Sprintf("%043d", i),
			Birthdate:     fmt.Sprintf("%d-%02d-%02d", 1975+i%25, 1+i%12, []int{9, 19}[i%2]),
			Phone:         fmt.Sprintf("010-%04d-%04d", 1000+i%9000, i%10000),
			Region:        regions[i%len(regions)],
			DeviceID:      fmt.Sprintf("bench-device-%08d", i),
		})
		out[i] = b
	}
	return out
}

// overloadFactors are the overload run's rates, in capacities: the surge
// a single intake should ride (1.5) and one it can only refuse (3).
const (
	overloadFactor   = 1.5
	overloadFactor3x = 3
)

// overload pins the generator (this process) and the server apart, starts
// the intake alone in a child process with GOMAXPROCS=1, measures its
// capacity with the closed loop, then offers 1.5 times that for the
// overload duration and 3 times that for the 3x duration; then the
// refusal floor, the same rates against a refusing intake.
func (r *intakeRun) overload(ctx context.Context) error {
	o, out, progress := r.o, r.out, r.s.progress
	release, err := r.pin()
	if err != nil {
		return err
	}
	defer release()
	if o.OverloadServer == "overload" {
		if err := r.generatorCeiling(ctx); err != nil {
			return err
		}
	}
	child, err := r.startChild(ctx, childOptions{gomaxprocs1: true, cpus: r.serverCPUs, profileDir: o.ProfileDir}, o.OverloadServer)
	if err != nil {
		return err
	}
	defer child.stop()
	url := child.url
	if _, err := closedLoop(ctx, url, r.bodies, o.Connections, time.Second); err != nil {
		return err
	}
	if o.OverloadServer == "refuse" {
		// No 202 to offer more of: measure how fast every submission is
		// refused, at the closed loop's connections and at the open loop's.
		for _, c := range []int{o.Connections, o.OverloadConnections} {
			res, err := closedLoop(ctx, url, r.bodies, c, o.Duration)
			if err != nil {
				return err
			}
			progress("refuse: %d connections: %.0f answers/s (%s)", c, res.answersPerS(), res.others())
			out.RefusalCeilingRPS = max(out.RefusalCeilingRPS, res.answersPerS())
		}
		return ctx.Err()
	}
	cpu0 := procCPUTime(child.cmd.Process.Pid)
	capacity, err := closedLoop(ctx, url, r.bodies, o.Connections, o.Duration)
	if err != nil {
		return err
	}
	out.CPUPer202Micros = perAnswerMicros(procCPUTime(child.cmd.Process.Pid)-cpu0, capacity)
	c := capacity.rps()
	out.OverloadCapacityRPS = c
	out.OverloadConnections = o.OverloadConnections
	rate := overloadFactor * c
	if o.OverloadRate > 0 {
		rate = o.OverloadRate
	}
	if a, rf := out.CPUPer202Micros, out.CPUPer503Micros; a > rf && rf > 0 && c > 0 {
		lstar := (1 - rate*rf/1e6) / ((a - rf) / 1e6)
		out.ExpectedGoodputRatio = min(rate, max(0, lstar)) / c
		progress("overload: a 202 costs %.1f µs of CPU, a 503 %.1f µs: at %.0f req/s one core can admit %.2f of its capacity", a, rf, rate, out.ExpectedGoodputRatio)
	}
	progress("overload: capacity %.0f req/s; offering %.0f req/s for %s…", c, rate, o.Overload)
	out.OverloadRun = r.offer(ctx, child, rate, o.Overload)
	if o.Overload3x > 0 && ctx.Err() == nil {
		time.Sleep(time.Second) // the Retry-After the first run's refusals asked for
		rate3 := overloadFactor3x * c
		if ceiling := generatorShare * out.GeneratorCeilingRPS; ceiling > 0 && rate3 > ceiling {
			progress("overload: the generator cannot offer 3 × capacity (%.0f req/s): offering %.0f, %.0f %% of its ceiling", rate3, ceiling, 100*generatorShare)
			rate3 = ceiling
		}
		progress("overload: offering %.0f req/s (%.1f × capacity) for %s…", rate3, rate3/c, o.Overload3x)
		out.OverloadRun3x = OverloadRun3x(r.offer(ctx, child, rate3, o.Overload3x))
	}
	child.stop()
	if !o.RefuseFloor || o.OverloadServer != "overload" || ctx.Err() != nil {
		return ctx.Err()
	}
	return r.floors(ctx)
}

// pin binds this process (the load generator) to every allowed CPU but
// the first and notes the first for the server, when there are two or
// more; the returned function undoes it.
func (r *intakeRun) pin() (func(), error) {
	cpus := allowedCPUs()
	if len(cpus) < 2 {
		r.s.progress("overload: one CPU: the generator and the server share it (not pinned)")
		return func() {}, nil
	}
	server, gen := cpus[:1], cpus[1:]
	restore, err := pinProcess(gen)
	if err != nil {
		return nil, err
	}
	procs := runtime.GOMAXPROCS(len(gen))
	r.serverCPUs = cpuList(server)
	r.out.OverloadServerCPUs, r.out.OverloadGeneratorCPUs = r.serverCPUs, cpuList(gen)
	r.s.progress("overload: server on CPU %s, generator on CPU %s", r.out.OverloadServerCPUs, r.out.OverloadGeneratorCPUs)
	return func() {
		runtime.GOMAXPROCS(procs)
		restore()
		r.serverCPUs = ""
	}, nil
}

// offer runs the open loop at rate for d against the intake child and
// returns its figures (the floor's are filled by floors).
func (r *intakeRun) offer(ctx context.Context, child *childServer, rate float64, d time.Duration) OverloadRun {
	resetPeakRSS(child.cmd.Process.Pid)
	res := openLoop(ctx, child.url, r.bodies, rate, d, r.o.OverloadConnections)
	answered := res.ok + res.shed + res.other5xx
	run := OverloadRun{
		IntendedRPS:   rate,
		OfferedRPS:    res.offered(d),
		GoodputRPS:    float64(res.ok) / d.Seconds(),
		Share503:      ratio(float64(res.shed), float64(answered)),
		P99MS:         ms(res.quantile(0.99)),
		AcceptedP99MS: ms(loadResult{latencies: res.accepted}.quantile(0.99)),
		SendP99MS:     ms(loadResult{latencies: res.service}.quantile(0.99)),
		Timeouts:      res.timeouts,
		MaxRSSMiB:     float64(peakRSS(child.cmd.Process.Pid)) / (1 << 20),
		Other5xx:      res.other5xx,
	}
	run.AnsweredRPS = run.GoodputRPS
	run.GoodputRatio = ratio(run.GoodputRPS, r.out.OverloadCapacityRPS)
	r.s.progress("overload: offered %.0f req/s (meant %.0f): 202 %.0f/s (%.2f of capacity), p99 %.1f ms (202s %.1f ms, from send %.1f ms), timeouts %d, RSS %.0f MiB",
		run.OfferedRPS, rate, run.GoodputRPS, run.GoodputRatio, run.P99MS, run.AcceptedP99MS, run.SendP99MS, run.Timeouts, run.MaxRSSMiB)
	r.s.progress("overload: 202 %d, 503 %d, other 5xx %d, errors %d (first: %v; other answers: %s); intake shed %s",
		res.ok, res.shed, res.other5xx, res.errors, res.firstErr, res.others(), shedCounts(child.url))
	return run
}

// generatorShare is the share of the generator's ceiling the 3x run
// offers at most: at its ceiling the generator, not the server, would make
// the latency.
const generatorShare = 0.9

// generatorCeiling measures what the generator, on its CPUs, gets
// answered per second by intake refusing every submission on the
// server's CPU, over the open loop's connections in a closed loop: the
// most the open loop can offer on this machine.
func (r *intakeRun) generatorCeiling(ctx context.Context) error {
	child, err := r.startChild(ctx, childOptions{gomaxprocs1: true, cpus: r.serverCPUs}, "refuse")
	if err != nil {
		return err
	}
	defer child.stop()
	if _, err := closedLoop(ctx, child.url, r.bodies, r.o.OverloadConnections, time.Second); err != nil {
		return err
	}
	cpu0 := procCPUTime(child.cmd.Process.Pid)
	res, err := closedLoop(ctx, child.url, r.bodies, r.o.OverloadConnections, 2*time.Second)
	if err != nil {
		return err
	}
	r.out.CPUPer503Micros = perAnswerMicros(procCPUTime(child.cmd.Process.Pid)-cpu0, res)
	r.out.GeneratorCeilingRPS = res.answersPerS()
	r.s.progress("overload: the generator's ceiling against a refusing intake: %.0f answers/s", r.out.GeneratorCeilingRPS)
	return nil
}

// floors offers the overload runs' rates, for as long, to intake in the
// same kind of process, on the same CPU, while it refuses every
// submission first thing (draining): the latency a server that does
// nothing but answer 503 gets from this machine and generator at those
// rates. The overload run's pinning holds.
func (r *intakeRun) floors(ctx context.Context) error {
	child, err := r.startChild(ctx, childOptions{gomaxprocs1: true, cpus: r.serverCPUs}, "refuse")
	if err != nil {
		return err
	}
	defer child.stop()
	out, o, progress := r.out, r.o, r.s.progress
	floor := func(run *OverloadRun, d time.Duration) {
		if run.IntendedRPS == 0 || ctx.Err() != nil {
			return
		}
		progress("refusal floor: %.0f req/s for %s against intake refusing everything…", run.IntendedRPS, d)
		res := openLoop(ctx, child.url, r.bodies, run.IntendedRPS, d, o.OverloadConnections)
		run.FloorOfferedRPS = res.offered(d)
		run.FloorP99MS = ms(res.quantile(0.99))
		run.FloorTimeouts = res.timeouts
		progress("refusal floor: offered %.0f req/s, p99 %.1f ms (from send %.1f ms), 503 %d, timeouts %d", run.FloorOfferedRPS, run.FloorP99MS, ms(loadResult{latencies: res.service}.quantile(0.99)), res.shed, res.timeouts)
	}
	floor(&out.OverloadRun, o.Overload)
	run3 := OverloadRun(out.OverloadRun3x)
	floor(&run3, o.Overload3x)
	out.OverloadRun3x = OverloadRun3x(run3)
	return ctx.Err()
}

// perAnswerMicros is CPU time per answer of a load run, in microseconds.
func perAnswerMicros(cpu time.Duration, res loadResult) float64 {
	n := res.answersPerS() * res.elapsed.Seconds()
	if n == 0 || cpu <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / n
}

// childServer is a bench server in its own process.
type childServer struct {
	url string
	cmd *osexec.Cmd
}

// childOptions are how a bench server's process is run.
type childOptions struct {
	gomaxprocs1 bool   // GOMAXPROCS=1 (the overload run)
	cpus        string // pin the server to these CPUs ("": not pinned)
	profileDir  string // write a CPU profile to DIR/MODE.prof, the heap to DIR/MODE.heap.prof
}

func (r *intakeRun) startChild(ctx context.Context, opt childOptions, mode string) (*childServer, error) {
	args := []string{"--mode", mode, "--database-url", r.dbURL, "--connections", strconv.Itoa(r.o.Connections)}
	if opt.cpus != "" {
		args = append(args, "--cpus", opt.cpus)
	}
	if opt.profileDir != "" {
		args = append(args, "--cpuprofile", filepath.Join(opt.profileDir, mode+".prof"),
			"--heapprofile", filepath.Join(opt.profileDir, mode+".heap.prof"))
	}
	sc := r.o.ServerCommand
	cmd := osexec.CommandContext(ctx, sc[0], append(slices.Clone(sc[1:]), args...)...)
	cmd.Env = os.Environ()
	if opt.gomaxprocs1 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.Stderr = r.s.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench server: start: %w", err)
	}
	c := &childServer{cmd: cmd}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		c.stop()
		return nil, fmt.Errorf("bench server %s did not start", mode)
	}
	url, ok := strings.CutPrefix(lines.Text(), "ready ")
	if !ok {
		c.stop()
		return nil, fmt.Errorf("bench server said %q", lines.Text())
	}
	c.url = url
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return c, nil
}

func (c *childServer) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}

// comparison runs the servers side by side, alternating them in every
// round so that machine drift hits them alike.
func (r *intakeRun) comparison(ctx context.Context, modes []string) error {
	o, out, progress := r.o, r.out, r.s.progress
	// (a) bare: decode and answer 202; (b) naive: one INSERT … ON CONFLICT
	// per request; (c) intake on the embedded JetStream; (d) the same with
	// sync_interval: always; (e) with BareFasthttp, bare on fasthttp.
	// Each in its own process.
	progress("starting the %d servers…", len(modes))
	urls := map[string]string{}
	for _, m := range modes {
		c, err := r.startChild(ctx, childOptions{profileDir: o.ProfileDir}, m)
		if err != nil {
			return err
		}
		defer c.stop()
		urls[m] = c.url
	}
	progress("warming up…")
	for _, m := range modes {
		if _, err := closedLoop(ctx, urls[m], r.bodies, o.Connections, time.Second); err != nil {
			return err
		}
	}
	runs := map[string][]loadResult{}
	for round := range o.Rounds {
		for _, m := range modes {
			res, err := closedLoop(ctx, urls[m], r.bodies, o.Connections, o.Duration)
			if err != nil {
				return err
			}
			runs[m] = append(runs[m], res)
			progress("round %d/%d %-14s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %d %s", round+1, o.Rounds, m, res.rps(), ms(res.quantile(0.5)), ms(res.quantile(0.99)), res.errors, res.others())
		}
	}
	for _, m := range modes {
		out.Modes[m] = summarize(runs[m])
	}
	out.BareRPS, out.NaiveRPS = out.Modes["bare"].RPS, out.Modes["naive"].RPS
	out.IntakeRPS, out.IntakeSyncedRPS = out.Modes["intake"].RPS, out.Modes["intake_synced"].RPS
	out.IntakeP99MS = out.Modes["intake"].P99MS
	out.RatioBare = ratio(out.IntakeRPS, out.BareRPS)
	out.RatioNaive = ratio(out.IntakeRPS, out.NaiveRPS)
	out.RatioNaiveSynced = ratio(out.IntakeSyncedRPS, out.NaiveRPS)
	out.IntakeSyncedGroupAvg = groupAverage(urls["intake_synced"])
	progress("intake_synced: %.1f intents per publish (group commit)", out.IntakeSyncedGroupAvg)
	if m, ok := out.Modes["bare_fasthttp"]; ok {
		out.BareFastRPS = m.RPS
		out.RatioBareFasthttp = ratio(out.IntakeRPS, m.RPS)
	}
	return nil
}
