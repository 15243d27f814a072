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

	OverloadOfferedRPS  float64 `json:"overload_offered_rps"`
	OverloadAnsweredRPS float64 `json:"overload_answered_rps"`
	Overload503Share    float64 `json:"overload_503_share"`
	OverloadP99MS       float64 `json:"overload_p99_ms"`
	OverloadMaxRSSMiB   float64 `json:"overload_max_rss_mib"`
	OverloadOther5xx    int64   `json:"overload_other_5xx"`
	OverloadTimeouts    int64   `json:"overload_timeouts"`
	OverloadCapacityRPS float64 `json:"overload_capacity_rps"`
	// OverloadConnections is the open-loop generator's connection count
	// (--overload-connections): one request at a time on each, as wrk2
	// does, with latencies counted from when each request was due.
	OverloadConnections int `json:"overload_connections,omitempty"`
	// The refusal floor (--refuse-floor): the same open loop at the same
	// rate against intake refusing every submission first thing (GOMAXPROCS=1
	// too). It is what this machine, generator and server process do at
	// that rate when the server does nothing but refuse: no shedding policy
	// inside intake can answer faster than this.
	FloorP99MS    float64 `json:"overload_refuse_floor_p99_ms,omitempty"`
	FloorTimeouts int64   `json:"overload_refuse_floor_timeouts,omitempty"`
	// RefusalCeilingRPS (--overload-server refuse): submissions per second
	// one core answers 503 when intake refuses them all.
	RefusalCeilingRPS float64 `json:"refusal_ceiling_rps,omitempty"`

	Modes       map[string]ModeSummary `json:"modes"`
	Rounds      int                    `json:"rounds"`
	DurationS   float64                `json:"duration_s"`
	Connections int                    `json:"connections"`
	NumCPU      int                    `json:"nproc"`
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
	// Overload is the open-loop overload run's length (0 skips it).
	Overload time.Duration
	// OverloadServer is the overload run's server: overload (intake),
	// bare, or refuse.
	OverloadServer      string
	ProfileDir          string  // CPU and heap profiles of each server, by mode
	BareFasthttp        bool    // also run the bare handler on fasthttp
	OverloadConnections int     // connections of the open-loop generator
	OverloadRate        float64 // 0: twice the measured capacity
	RefuseFloor         bool    // after the overload run, the refusal floor at the same rate
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
// each server in a process of its own, in rounds; then offers twice
// intake's capacity to intake alone on one core.
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
		if o.RefuseFloor && o.OverloadServer == "overload" {
			progress("refusal floor: the same %.0f req/s against intake refusing everything…", out.OverloadOfferedRPS)
			if err := r.floor(ctx); err != nil {
				return nil, err
			}
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
		fmt.Fprintf(w, "\noverload (%s, intake GOMAXPROCS=1, capacity %.0f req/s, %d open-loop connections):\n", o.Overload, b.OverloadCapacityRPS, b.OverloadConnections)
		fmt.Fprintf(w, "  offered %.0f req/s, answered 202 %.0f req/s, 503 share %.2f, p99 %.1f ms (target <= 100)\n",
			b.OverloadOfferedRPS, b.OverloadAnsweredRPS, b.Overload503Share, b.OverloadP99MS)
		fmt.Fprintf(w, "  max RSS %.0f MiB (target <= 256), other 5xx %d, timeouts %d (target 0)\n", b.OverloadMaxRSSMiB, b.OverloadOther5xx, b.OverloadTimeouts)
		if b.FloorP99MS > 0 {
			fmt.Fprintf(w, "  refusal floor at the same rate (every submission refused): p99 %.1f ms, timeouts %d\n", b.FloorP99MS, b.FloorTimeouts)
		}
	}
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

// overload starts the intake alone in a child process with GOMAXPROCS=1,
// measures its capacity with the closed loop, then offers twice that (or
// OverloadRate, when set) for the overload duration.
func (r *intakeRun) overload(ctx context.Context) error {
	o, out, progress := r.o, r.out, r.s.progress
	child, err := r.startChild(ctx, childOptions{gomaxprocs1: true, profileDir: o.ProfileDir}, o.OverloadServer)
	if err != nil {
		return err
	}
	defer child.stop()
	url := child.url
	if _, err := closedLoop(ctx, url, r.bodies, o.Connections, time.Second); err != nil {
		return err
	}
	if o.OverloadServer == "refuse" {
		// No 202 to offer twice of: measure how fast every submission is
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
	capacity, err := closedLoop(ctx, url, r.bodies, o.Connections, o.Duration)
	if err != nil {
		return err
	}
	out.OverloadCapacityRPS = capacity.rps()
	out.OverloadConnections = o.OverloadConnections
	rate := 2 * capacity.rps()
	if o.OverloadRate > 0 {
		rate = o.OverloadRate
	}
	d := o.Overload
	progress("overload: capacity %.0f req/s; offering %.0f req/s for %s…", capacity.rps(), rate, d)
	res := openLoop(ctx, url, r.bodies, rate, d, o.OverloadConnections)
	answered := res.ok + res.shed + res.other5xx
	out.OverloadOfferedRPS = rate
	out.OverloadAnsweredRPS = float64(res.ok) / d.Seconds()
	out.Overload503Share = ratio(float64(res.shed), float64(answered))
	out.OverloadP99MS = ms(res.quantile(0.99))
	out.OverloadOther5xx = res.other5xx
	out.OverloadTimeouts = res.timeouts
	out.OverloadMaxRSSMiB = float64(peakRSS(child.cmd.Process.Pid)) / (1 << 20)
	progress("overload: p99 from send (without the generator's lag) %.1f ms; p99 of the 202s alone %.1f ms", ms(loadResult{latencies: res.service}.quantile(0.99)), ms(loadResult{latencies: res.accepted}.quantile(0.99)))
	progress("overload: 202 %d, 503 %d, other 5xx %d, errors %d (timeouts %d; first: %v; other answers: %s); intake shed %s", res.ok, res.shed, res.other5xx, res.errors, res.timeouts, res.firstErr, res.others(), shedCounts(url))
	return ctx.Err()
}

// floor offers the overload run's rate, for as long, to intake in the
// same kind of process (GOMAXPROCS=1) while it refuses every submission
// first thing (draining): the latency a server that does nothing but
// answer 503 gets from this machine and generator at that rate.
func (r *intakeRun) floor(ctx context.Context) error {
	child, err := r.startChild(ctx, childOptions{gomaxprocs1: true}, "refuse")
	if err != nil {
		return err
	}
	defer child.stop()
	out := r.out
	res := openLoop(ctx, child.url, r.bodies, out.OverloadOfferedRPS, r.o.Overload, r.o.OverloadConnections)
	out.FloorP99MS = ms(res.quantile(0.99))
	out.FloorTimeouts = res.timeouts
	r.s.progress("refusal floor: p99 %.1f ms (from send %.1f ms), 503 %d, timeouts %d", out.FloorP99MS, ms(loadResult{latencies: res.service}.quantile(0.99)), res.shed, res.timeouts)
	return ctx.Err()
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// childServer is a bench server in its own process.
type childServer struct {
	url string
	cmd *osexec.Cmd
}

// childOptions are how a bench server's process is run.
type childOptions struct {
	gomaxprocs1 bool   // GOMAXPROCS=1 (the overload run)
	profileDir  string // write a CPU profile to DIR/MODE.prof, the heap to DIR/MODE.heap.prof
}

func (r *intakeRun) startChild(ctx context.Context, opt childOptions, mode string) (*childServer, error) {
	args := []string{"--mode", mode, "--database-url", r.dbURL, "--connections", strconv.Itoa(r.o.Connections)}
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
