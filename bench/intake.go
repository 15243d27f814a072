package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

func init() {
	register(command{name: "bench intake", summary: "intake's 202s/s against a bare handler and the naive INSERT-per-request design; overload run", run: cmdBenchIntake})
	register(command{name: "bench intake-server", summary: "(used by bench intake) intake alone on an embedded JetStream, for the overload run", run: cmdBenchIntakeServer})
}

// intakeBench is the result of `prereg bench intake`, with the JSON keys of
// issue 8 (and a few more that say how it was measured).
type intakeBench struct {
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

	Modes       map[string]modeSummary `json:"modes"`
	Rounds      int                    `json:"rounds"`
	DurationS   float64                `json:"duration_s"`
	Connections int                    `json:"connections"`
	NumCPU      int                    `json:"nproc"`
}

// modeSummary is the medians of one server over the rounds.
type modeSummary struct {
	RPS    float64 `json:"rps"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	Errors int64   `json:"errors"`
}

// The modes, in the order each round runs them.
var intakeBenchModes = []string{"bare", "naive", "intake", "intake_synced"}

func cmdBenchIntake(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench intake", "[--duration D] [--connections C] [--rounds N] [--overload-duration D] [--format text|json]")
	duration := fs.Duration("duration", 4*time.Second, "measured time of each mode in each round")
	conns := fs.Int("connections", 64, "closed-loop connections of the load generator")
	rounds := fs.Int("rounds", 5, "rounds; each runs bare, naive, intake, intake_synced in turn")
	overload := fs.Duration("overload-duration", 60*time.Second, "open-loop overload run at twice the measured capacity (0 skips it)")
	format := fs.String("format", "text", "text or json")
	overloadServer := fs.String("overload-server", "overload", "the server of the overload run: overload (intake), bare (the generator's own limit), or refuse (how many submissions one core can refuse: the ceiling of any shedding inside the process)")
	profileDir := fs.String("profile-dir", "", "write a CPU profile of each server to DIR/MODE.prof and its live heap at the end to DIR/MODE.heap.prof")
	bareFast := fs.Bool("bare-fasthttp", false, "also run the bare handler on fasthttp (the server intake runs on) in every round, and print intake's ratio to it")
	openConns := fs.Int("overload-connections", 2048, "connections of the overload run's open-loop generator (each carries one request at a time)")
	overloadRate := fs.Float64("overload-rate", 0, "offer this many requests/s in the overload run instead of twice the measured capacity (0: twice the capacity), to compare settings at one rate")
	floor := fs.Bool("refuse-floor", true, "after the overload run, offer the same rate to intake refusing every submission: the latency floor of this machine and generator at that rate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usagef("--format %q: want text or json", *format)
	}
	if *overloadServer != "overload" && *overloadServer != "bare" && *overloadServer != "refuse" {
		return usagef("--overload-server %q: want overload, bare or refuse", *overloadServer)
	}
	if *duration < 500*time.Millisecond || *conns < 1 || *openConns < 1 || *overloadRate < 0 || *rounds < 0 || *overload < 0 {
		return usagef("want --duration >= 500ms, --connections >= 1, --overload-connections >= 1, --overload-rate >= 0, --rounds >= 0 (0: overload run only), --overload-duration >= 0")
	}
	progress := func(msg string, a ...any) {
		if *format == "text" {
			fmt.Fprintf(env.Stderr, msg+"\n", a...)
		}
	}
	bodies := benchBodies(20000)

	out := intakeBench{Modes: map[string]modeSummary{}, Rounds: *rounds, DurationS: duration.Seconds(), Connections: *conns, NumCPU: runtime.NumCPU()}
	modes := intakeBenchModes
	if *bareFast {
		modes = append(slices.Clone(modes), "bare_fasthttp")
	}
	if *rounds > 0 {
		if err := runComparison(ctx, env, &out, modes, bodies, *conns, *duration, *rounds, *profileDir, progress); err != nil {
			return err
		}
	}
	if *overload > 0 {
		progress("overload: intake alone with GOMAXPROCS=1, capacity first…")
		if err := runOverload(ctx, env, &out, *overloadServer, bodies, *conns, *openConns, *overloadRate, *duration, *overload, *profileDir, progress); err != nil {
			return err
		}
		if *floor && *overloadServer == "overload" {
			progress("refusal floor: the same %.0f req/s against intake refusing everything…", out.OverloadOfferedRPS)
			if err := runFloor(ctx, env, &out, bodies, *openConns, *overload, progress); err != nil {
				return err
			}
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printIntakeBench(env.Stdout, out, modes, *overload)
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func printIntakeBench(w io.Writer, b intakeBench, modes []string, overload time.Duration) {
	fmt.Fprintf(w, "prereg bench intake: %d rounds × %.1fs per mode, %d connections, %d CPUs (medians over rounds)\n\n", b.Rounds, b.DurationS, b.Connections, b.NumCPU)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\treq/s\tp50 ms\tp99 ms\terrors\t")
	for _, m := range modes {
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
	if overload > 0 {
		if b.RefusalCeilingRPS > 0 {
			fmt.Fprintf(w, "\nrefusal ceiling (intake refusing every submission, GOMAXPROCS=1): %.0f answers/s\n", b.RefusalCeilingRPS)
			return
		}
		fmt.Fprintf(w, "\noverload (%s, intake GOMAXPROCS=1, capacity %.0f req/s, %d open-loop connections):\n", overload, b.OverloadCapacityRPS, b.OverloadConnections)
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

// benchServer is an HTTP server on a loopback port.
type benchServer struct {
	url  string
	srv  interface{ Close() error }
	once sync.Once
	stop func()
}

// closerFunc is a func as an io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func startBenchServer(h http.Handler) (*benchServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &benchServer{url: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (b *benchServer) close() {
	b.once.Do(func() {
		_ = b.srv.Close()
		if b.stop != nil {
			b.stop()
		}
	})
}

// serveBareFast is serveBare on fasthttp, the server intake runs on.
func serveBareFast(ctx *fasthttp.RequestCtx) {
	var req intake.Request
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		ctx.Error("bad", http.StatusBadRequest)
		return
	}
	receipt := benchReceipt()
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.SetStatusCode(http.StatusAccepted)
	_ = json.NewEncoder(ctx).Encode(map[string]string{"receipt": receipt, "status": "received", "status_url": "/v1/intents/" + receipt})
}

// serveBare is the ceiling of the HTTP path: decode the same body, answer
// the same 202 shape, do nothing else.
func serveBare(w http.ResponseWriter, r *http.Request) {
	var req intake.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, intake.MaxBody)).Decode(&req); err != nil {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	receipt := benchReceipt()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"receipt": receipt, "status": "received", "status_url": "/v1/intents/" + receipt})
}

func benchReceipt() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// naiveDatabase creates a fresh database with the naive design's table on
// the PostgreSQL prereg would use, and returns its URL.
func naiveDatabase(ctx context.Context, env *Env) (string, func(), error) {
	srv, err := postgres.FindServer(ctx, env.Getenv("DATABASE_URL"), env.Logger)
	if err != nil {
		return "", nil, err
	}
	name := "prereg_bench_intake_" + benchReceipt()[:8]
	if err := postgres.CreateDatabase(ctx, srv.URL, name); err != nil {
		_ = srv.Close()
		return "", nil, err
	}
	drop := func() {
		_ = postgres.DropDatabase(context.Background(), srv.URL, name)
		_ = srv.Close()
	}
	url := srv.DatabaseURL(name)
	pool, err := postgres.Open(ctx, url)
	if err != nil {
		drop()
		return "", nil, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE intents (
		receipt text PRIMARY KEY, campaign text NOT NULL, provider text NOT NULL, identity_token text NOT NULL,
		birthdate date NOT NULL, phone text NOT NULL, region text NOT NULL, device_id text NOT NULL,
		received_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		drop()
		return "", nil, fmt.Errorf("naive table: %w", err)
	}
	return url, drop, nil
}

// naivePool is a pool as large as the connections, with synchronous_commit
// on: every 202 of the naive design waits for its commit's fsync.
func naivePool(ctx context.Context, url string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("naive pool: %w", err)
	}
	cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("naive pool: %w", err)
	}
	return pool, nil
}

// naiveHandler is the design prereg replaces: the request waits for its
// own committed INSERT.
func naiveHandler(pool *pgxpool.Pool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req intake.Request
		if err := json.NewDecoder(io.LimitReader(r.Body, intake.MaxBody)).Decode(&req); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		receipt := benchReceipt()
		_, err := pool.Exec(r.Context(), `INSERT INTO intents (receipt, campaign, provider, identity_token, birthdate, phone, region, device_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (receipt) DO NOTHING`,
			receipt, req.Campaign, req.Provider, req.IdentityToken, req.Birthdate, req.Phone, req.Region, req.DeviceID)
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"receipt": receipt, "status": "received", "status_url": "/v1/intents/" + receipt})
	})
}

// benchCampaignYAML is the bench's campaign: one window for digit 9 that is
// open at benchNow.
const benchCampaignYAML = `
id: bench-intake
name: intake benchmark
cohort: {born_from: 1970-01-01, born_to: 2005-12-31}
windows:
  - {id: d9, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [9]}
providers:
  - {name: pass, url: http://127.0.0.1:1}
shards: 16
schedule: {start: 2021-08-26, days: 1, bands: ["09:00-12:00"]}
`

var benchNow = time.Date(2021, 8, 9, 12, 30, 0, 0, time.UTC) // 21:30 in Seoul

type benchCampaigns []*campaign.Campaign

func (b benchCampaigns) List(context.Context) ([]*campaign.Campaign, time.Time, error) {
	return b, time.Time{}, nil
}

// startBenchIntake runs prereg's intake on its own embedded JetStream
// (in-process connection), with rate limits off: the load comes from one
// address. Without overload protection (the closed-loop comparison, where
// 64 connections cannot build a queue) the ack-latency target is relaxed
// and the CPU guard is off, so that the run measures throughput rather
// than how early intake starts shedding; the overload run keeps every
// default. refuse is overload draining from the start: every submission is
// refused at once with intake's own 503.
func startBenchIntake(ctx context.Context, mode string) (*benchServer, error) {
	syncAlways, protect := mode == "intake_synced", mode == "overload" || mode == "refuse"
	c, err := campaign.Parse([]byte(benchCampaignYAML), "")
	if err != nil {
		return nil, fmt.Errorf("bench campaign: %w", err)
	}
	dir, err := os.MkdirTemp("", "prereg-bench-intake-")
	if err != nil {
		return nil, err
	}
	emb, err := stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: dir, Port: -1, SyncAlways: syncAlways})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cleanup := func() { emb.Shutdown(); os.RemoveAll(dir) }
	nc, err := emb.Connect()
	if err != nil {
		cleanup()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		cleanup()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// With every write fsync'd, intake groups concurrent intents into
	// atomic batches, one flush each (intake.Config.GroupCommit).
	if err := stream.Declare(ctx, js, stream.Config{AtomicBatches: syncAlways}); err != nil {
		nc.Close()
		cleanup()
		return nil, err
	}
	sealer, err := keys.NewSealer([]keys.Key{{ID: "bench", Secret: []byte(benchReceipt())}})
	if err != nil {
		nc.Close()
		cleanup()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	cfg := intake.Config{
		JetStream: js, Conn: nc, Campaigns: benchCampaigns{c}, Registry: reg,
		Hasher: keys.NewHasher(keys.Key{ID: "bench", Secret: []byte(benchReceipt())}), Sealer: sealer,
		Now:        func() time.Time { return benchNow },
		DeviceRate: -1, AddrRate: -1,
		GroupCommit: syncAlways,
	}
	if !protect {
		cfg.SlowAck, cfg.MaxQueueWait = 2*time.Second, -1
	}
	svc, err := intake.New(cfg)
	if err != nil {
		nc.Close()
		cleanup()
		return nil, err
	}
	if err := svc.Start(ctx); err != nil {
		nc.Close()
		cleanup()
		return nil, err
	}
	// The same server as `prereg serve` runs intake on: its fasthttp front.
	mux := http.NewServeMux()
	svc.Register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		svc.Stop()
		nc.Close()
		cleanup()
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := svc.FastServer(mux, nil)
	go func() { _ = srv.Serve(ln) }()
	bs := &benchServer{url: "http://" + ln.Addr().String(), srv: closerFunc(srv.Shutdown)}
	bs.stop = func() { svc.Stop(); nc.Close(); cleanup() }
	if mode == "refuse" {
		svc.Stop() // draining: every submission gets intake's 503 first thing
	}
	return bs, nil
}

// loadResult is what one load run saw.
type loadResult struct {
	elapsed   time.Duration
	ok        int64 // 202
	shed      int64 // 503
	other5xx  int64
	errors    int64 // anything but 202 (closed loop), or no answer
	timeouts  int64
	latencies []time.Duration // of every answered request
	statuses  map[int]int64   // answers other than 202 (0: no answer)
	firstErr  error
	// service is each request's time from its actual send (open loop):
	// latencies minus the generator's own lag.
	service []time.Duration
	// accepted is the latency of each 202 (open loop), from when it was
	// due: whether the 202s or the 503s make the p99.
	accepted []time.Duration
}

// others says which answers other than 202 came back, e.g. "503×12".
func (r loadResult) others() string {
	var parts []string
	for code, n := range r.statuses {
		parts = append(parts, fmt.Sprintf("%d×%d", code, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (r loadResult) rps() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// answersPerS counts every answer, whatever its status.
func (r loadResult) answersPerS() float64 {
	n := r.ok
	for code, c := range r.statuses {
		if code != 0 {
			n += c
		}
	}
	return float64(n) / r.elapsed.Seconds()
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

func summarize(rs []loadResult) modeSummary {
	med := func(f func(loadResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var errs int64
	for _, r := range rs {
		errs += r.errors
	}
	return modeSummary{
		RPS:    med(loadResult.rps),
		P50MS:  med(func(r loadResult) float64 { return ms(r.quantile(0.5)) }),
		P99MS:  med(func(r loadResult) float64 { return ms(r.quantile(0.99)) }),
		Errors: errs,
	}
}

// loadClient is the load generator's HTTP client. It is fasthttp's, which
// costs the generator a fraction of what net/http's client does per
// request: on the two cores the servers share with it, the generator must
// be able to offer what they can take (as wrk would), not be the limit
// itself, which net/http's client was at about 15,000 requests a second.
type loadClient struct {
	hc      *fasthttp.HostClient
	uri     string
	timeout time.Duration
}

func newLoadClient(url string, conns int, timeout time.Duration) *loadClient {
	return &loadClient{
		hc: &fasthttp.HostClient{
			Addr: strings.TrimPrefix(url, "http://"), MaxConns: conns,
			ReadTimeout: timeout, WriteTimeout: timeout, MaxConnWaitTimeout: timeout,
			MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true,
		},
		uri:     url + "/v1/intents",
		timeout: timeout,
	}
}

// post sends one body and returns the answer's status.
func (c *loadClient) post(body []byte) (int, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(c.uri)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := c.hc.DoTimeout(req, res, c.timeout); err != nil {
		return 0, err
	}
	return res.StatusCode(), nil
}

func (c *loadClient) close() { c.hc.CloseIdleConnections() }

// closedLoop runs conns workers that each send the next body as soon as the
// previous one is answered.
func closedLoop(ctx context.Context, url string, bodies [][]byte, conns int, d time.Duration) (loadResult, error) {
	client := newLoadClient(url, conns, 10*time.Second)
	defer client.close()
	var next atomic.Int64
	var mu sync.Mutex
	res := loadResult{statuses: map[int]int64{}}
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ok, bad int64
			statuses := map[int]int64{}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				b := bodies[int(next.Add(1))%len(bodies)]
				t0 := time.Now()
				status, err := client.post(b)
				if err != nil || status != http.StatusAccepted {
					statuses[status]++
					bad++
					continue
				}
				ok++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			for code, n := range statuses {
				res.statuses[code] += n
			}
			res.ok += ok
			res.errors += bad
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	return res, ctx.Err()
}

// openLoopTimeout is how long the open-loop generator's clients wait for
// an answer, counted from when the request was due.
const openLoopTimeout = 10 * time.Second

// openLoop offers rate requests per second for d whatever the answers, and
// measures each latency from the moment the request was due, so that a
// server that falls behind cannot hide it (no coordinated omission). It
// sends on workers connections, one request at a time on each: when they
// are all waiting, the requests falling due wait in the generator, and
// their wait counts.
func openLoop(ctx context.Context, url string, bodies [][]byte, rate float64, d time.Duration, workers int) loadResult {
	client := newLoadClient(url, workers, openLoopTimeout)
	defer client.close()
	due := make(chan time.Time, 1<<20)
	var mu sync.Mutex
	res := loadResult{statuses: map[int]int64{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ok, shed, other5xx, errs, timeouts int64
			var service, accepted []time.Duration
			for at := range due {
				if time.Since(at) > openLoopTimeout {
					// A citizen gives up after the timeout, whether the
					// request sat in the server or never got a connection.
					timeouts++
					errs++
					continue
				}
				b := bodies[int(next.Add(1))%len(bodies)]
				sentAt := time.Now()
				status, err := client.post(b)
				service = append(service, time.Since(sentAt))
				switch {
				case err != nil:
					var ne net.Error
					if errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout() {
						timeouts++
					}
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					errs++
					continue
				case status == http.StatusAccepted:
					ok++
					accepted = append(accepted, time.Since(at))
				case status == http.StatusServiceUnavailable:
					shed++
				case status >= 500:
					other5xx++
				default:
					mu.Lock()
					res.statuses[status]++
					mu.Unlock()
					errs++
				}
				lat = append(lat, time.Since(at))
			}
			mu.Lock()
			res.ok += ok
			res.shed += shed
			res.other5xx += other5xx
			res.errors += errs
			res.timeouts += timeouts
			res.latencies = append(res.latencies, lat...)
			res.service = append(res.service, service...)
			res.accepted = append(res.accepted, accepted...)
			mu.Unlock()
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	for now := start; now.Sub(start) < d && ctx.Err() == nil; now = <-tick.C {
		for target := int(now.Sub(start) / interval); sent < target; sent++ {
			due <- start.Add(time.Duration(sent) * interval)
		}
	}
	tick.Stop()
	close(due)
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	slices.Sort(res.service)
	slices.Sort(res.accepted)
	return res
}

// runOverload starts the intake alone in a child process with GOMAXPROCS=1,
// measures its capacity with the closed loop, then offers twice that (or
// fixedRate, when set) for the overload duration.
func runOverload(ctx context.Context, env *Env, out *intakeBench, server string, bodies [][]byte, conns, openConns int, fixedRate float64, capDur, d time.Duration, profileDir string, progress func(string, ...any)) error {
	child, err := startChild(ctx, env, childOptions{gomaxprocs1: true, profileDir: profileDir}, "--mode", server)
	if err != nil {
		return err
	}
	defer child.stop()
	url := child.url
	if _, err := closedLoop(ctx, url, bodies, conns, time.Second); err != nil {
		return err
	}
	if server == "refuse" {
		// No 202 to offer twice of: measure how fast every submission is
		// refused, at the closed loop's connections and at the open loop's.
		for _, c := range []int{conns, openConns} {
			res, err := closedLoop(ctx, url, bodies, c, capDur)
			if err != nil {
				return err
			}
			progress("refuse: %d connections: %.0f answers/s (%s)", c, res.answersPerS(), res.others())
			out.RefusalCeilingRPS = max(out.RefusalCeilingRPS, res.answersPerS())
		}
		return ctx.Err()
	}
	capacity, err := closedLoop(ctx, url, bodies, conns, capDur)
	if err != nil {
		return err
	}
	out.OverloadCapacityRPS = capacity.rps()
	out.OverloadConnections = openConns
	rate := 2 * capacity.rps()
	if fixedRate > 0 {
		rate = fixedRate
	}
	progress("overload: capacity %.0f req/s; offering %.0f req/s for %s…", capacity.rps(), rate, d)
	res := openLoop(ctx, url, bodies, rate, d, openConns)
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

// runFloor offers the overload run's rate, for as long, to intake in the
// same kind of process (GOMAXPROCS=1) while it refuses every submission
// first thing (draining): the latency a server that does nothing but
// answer 503 gets from this machine and generator at that rate.
func runFloor(ctx context.Context, env *Env, out *intakeBench, bodies [][]byte, openConns int, d time.Duration, progress func(string, ...any)) error {
	child, err := startChild(ctx, env, childOptions{gomaxprocs1: true}, "--mode", "refuse")
	if err != nil {
		return err
	}
	defer child.stop()
	res := openLoop(ctx, child.url, bodies, out.OverloadOfferedRPS, d, openConns)
	out.FloorP99MS = ms(res.quantile(0.99))
	out.FloorTimeouts = res.timeouts
	progress("refusal floor: p99 %.1f ms (from send %.1f ms), 503 %d, timeouts %d", out.FloorP99MS, ms(loadResult{latencies: res.service}.quantile(0.99)), res.shed, res.timeouts)
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

// cmdBenchIntakeServer runs one of the bench's servers in a process of its
// own until SIGTERM, and prints "ready URL" once it serves. The servers run
// apart from the load generator so that neither's garbage collector or
// scheduler charges the other, and so that GOMAXPROCS and resident memory
// apply to the server alone.
func cmdBenchIntakeServer(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench intake-server", "--mode bare|naive|intake|intake_synced|overload [--database-url URL] [--connections C]")
	mode := fs.String("mode", "overload", "which server: bare, naive, intake, intake_synced, or overload (intake with every guard on)")
	dbURL := fs.String("database-url", "", "the naive design's database")
	conns := fs.Int("connections", 64, "the naive design's pool size")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server's whole life to this file")
	heapProfile := fs.String("heapprofile", "", "write the server's live heap to this file when it is told to stop")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var s *benchServer
	switch *mode {
	case "bare":
		s, err = startBenchServer(http.HandlerFunc(serveBare))
	case "bare_fasthttp":
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			srv := &fasthttp.Server{Handler: serveBareFast, NoDefaultServerHeader: true}
			go func() { _ = srv.Serve(ln) }()
			s = &benchServer{url: "http://" + ln.Addr().String(), srv: closerFunc(srv.Shutdown)}
		}
	case "naive":
		var pool *pgxpool.Pool
		if pool, err = naivePool(ctx, *dbURL, *conns); err == nil {
			defer pool.Close()
			s, err = startBenchServer(naiveHandler(pool))
		}
	case "intake", "intake_synced", "overload", "refuse":
		app.TuneGC([]app.Role{app.RoleIntake}, env.Getenv) // as `prereg serve --roles intake`
		s, err = startBenchIntake(ctx, *mode)
	default:
		return usagef("--mode %q: want bare, bare_fasthttp, naive, intake, intake_synced, overload or refuse", *mode)
	}
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Fprintln(env.Stdout, "ready "+s.url)
	<-ctx.Done()
	return writeHeapProfile(*heapProfile)
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

func startChild(ctx context.Context, env *Env, opt childOptions, args ...string) (*childServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	if opt.profileDir != "" {
		args = append(args, "--cpuprofile", filepath.Join(opt.profileDir, args[1]+".prof"),
			"--heapprofile", filepath.Join(opt.profileDir, args[1]+".heap.prof"))
	}
	cmd := osexec.CommandContext(ctx, self, append([]string{"bench", "intake-server"}, args...)...)
	cmd.Env = os.Environ()
	if opt.gomaxprocs1 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.Stderr = env.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench server: start: %w", err)
	}
	c := &childServer{cmd: cmd}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		c.stop()
		return nil, fmt.Errorf("bench server %v did not start", args)
	}
	url, ok := strings.CutPrefix(sc.Text(), "ready ")
	if !ok {
		c.stop()
		return nil, fmt.Errorf("bench server said %q", sc.Text())
	}
	c.url = url
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return c, nil
}

func (c *childServer) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}

// runComparison runs the four servers side by side, alternating a, b, c, d
// in every round so that machine drift hits them alike.
func runComparison(ctx context.Context, env *Env, out *intakeBench, modes []string, bodies [][]byte, conns int, duration time.Duration, rounds int, profileDir string, progress func(string, ...any)) error {
	progress("creating the naive design's database…")
	dbURL, dropDB, err := naiveDatabase(ctx, env)
	if err != nil {
		return err
	}
	defer dropDB()
	// (a) bare: decode and answer 202; (b) naive: one INSERT … ON CONFLICT
	// per request; (c) intake on the embedded JetStream; (d) the same with
	// sync_interval: always; (e) with --bare-fasthttp, bare on fasthttp.
	// Each in its own process.
	progress("starting the %d servers…", len(modes))
	urls := map[string]string{}
	for _, m := range modes {
		c, err := startChild(ctx, env, childOptions{profileDir: profileDir}, "--mode", m, "--database-url", dbURL, "--connections", strconv.Itoa(conns))
		if err != nil {
			return err
		}
		defer c.stop()
		urls[m] = c.url
	}
	progress("warming up…")
	for _, m := range modes {
		if _, err := closedLoop(ctx, urls[m], bodies, conns, time.Second); err != nil {
			return err
		}
	}
	runs := map[string][]loadResult{}
	for r := range rounds {
		for _, m := range modes {
			res, err := closedLoop(ctx, urls[m], bodies, conns, duration)
			if err != nil {
				return err
			}
			runs[m] = append(runs[m], res)
			progress("round %d/%d %-14s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %d %s", r+1, rounds, m, res.rps(), ms(res.quantile(0.5)), ms(res.quantile(0.99)), res.errors, res.others())
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

// shedCounts reads the intake's shed counters from its /metrics.
func shedCounts(url string) string {
	lines := scrape(url)
	if lines == nil {
		return "unknown"
	}
	parts := []string{}
	for _, line := range lines {
		if v, ok := strings.CutPrefix(line, "prereg_intake_shed_total{reason="); ok {
			parts = append(parts, strings.ReplaceAll(strings.ReplaceAll(v, "\"", ""), "} ", ":"))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// groupAverage is the intents per publish of a server with group commit,
// over its whole life, from its group-size histogram (0 when unknown).
func groupAverage(url string) float64 {
	var sum, count float64
	for _, line := range scrape(url) {
		if v, ok := strings.CutPrefix(line, "prereg_intake_group_size_sum "); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "prereg_intake_group_size_count "); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	return ratio(sum, count)
}

// scrape is the lines of a server's /metrics (none when it cannot be read).
func scrape(url string) []string {
	res, err := http.Get(url + "/metrics")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil
	}
	return strings.Split(string(b), "\n")
}
