package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valyala/fasthttp"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/world"
)

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

// intakeDatabase creates the bench's scratch database on the PostgreSQL
// prereg would use: prereg's schema with the bench campaign loaded (for
// intake) and the naive design's table beside it. It returns its URL.
func intakeDatabase(ctx context.Context, s Setup) (string, func(), error) {
	db, err := world.OpenScratch(ctx, s.DatabaseURL, "prereg_bench_intake", s.logger())
	if err != nil {
		return "", nil, err
	}
	c, err := campaign.Parse([]byte(benchCampaignYAML), "")
	if err != nil {
		db.Close()
		return "", nil, fmt.Errorf("bench campaign: %w", err)
	}
	if _, err := (&postgres.CampaignStore{Pool: db.Pool}).Load(ctx, c); err != nil {
		db.Close()
		return "", nil, err
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE intents (
		receipt text PRIMARY KEY, campaign text NOT NULL, provider text NOT NULL, identity_token text NOT NULL,
		birthdate date NOT NULL, phone text NOT NULL, region text NOT NULL, device_id text NOT NULL,
		received_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("naive table: %w", err)
	}
	db.Pool.Close()
	db.Pool = nil
	return db.URL, db.Close, nil
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

// startBenchIntake runs prereg's intake role, built by app, on its own
// embedded JetStream (in-process connection), with rate limits off: the
// load comes from one address. Without overload protection (the
// closed-loop comparison, where 64 connections cannot build a queue) the
// ack-latency target is relaxed and the CPU guard is off, so that the run
// measures throughput rather than how early intake starts shedding; the
// overload run keeps every default. refuse is overload draining from the
// start: every submission is refused at once with intake's own 503.
func startBenchIntake(ctx context.Context, s Setup, mode, dbURL string) (*benchServer, error) {
	syncAlways, protect := mode == "intake_synced", mode == "overload" || mode == "refuse"
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	emb, err := stream.StartEmbedded(stream.EmbeddedConfig{Port: -1, SyncAlways: syncAlways})
	if err != nil {
		cleanup()
		return nil, err
	}
	closers = append(closers, emb.Shutdown)
	nc, err := emb.Connect()
	if err != nil {
		cleanup()
		return nil, err
	}
	closers = append(closers, nc.Close)
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		cleanup()
		return nil, err
	}
	closers = append(closers, pool.Close)
	cfg, err := benchConfig()
	if err != nil {
		cleanup()
		return nil, err
	}
	// The load generator on loopback stands for the load balancer: a
	// trusted proxy, whose thousands of connections are not capped per
	// address.
	intakeOpts := app.IntakeOptions{DeviceRate: -1, AddrRate: -1, GroupCommit: syncAlways,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	if !protect {
		intakeOpts.SlowAck, intakeOpts.MaxQueueWait = 2*time.Second, -1
	}
	sys, err := app.New(app.Options{
		Roles: []app.Role{app.RoleIntake}, Logger: s.logger(), Pool: pool, NC: nc, Config: cfg,
		Now: func() time.Time { return benchNow },
		// With every write fsync'd, intake groups concurrent intents into
		// atomic batches, one flush each (intake.Config.GroupCommit).
		Stream: stream.Config{AtomicBatches: syncAlways},
		Intake: intakeOpts,
	})
	if err != nil {
		cleanup()
		return nil, err
	}
	if err := sys.Start(ctx); err != nil {
		cleanup()
		return nil, err
	}
	closers = append(closers, sys.Stop)
	// The same server as `prereg serve` runs intake on: its fasthttp front.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := sys.NewServer(s.logger())
	go func() { _ = srv.Serve(ln) }()
	bs := &benchServer{url: "http://" + ln.Addr().String(), srv: srv, stop: cleanup}
	if mode == "refuse" {
		sys.Stop() // draining: every submission gets intake's 503 first thing
	}
	return bs, nil
}

// IntakeServerModes are the servers RunIntakeServer runs.
var IntakeServerModes = []string{"bare", "bare_fasthttp", "naive", "intake", "intake_synced", "overload", "refuse"}

// intakeServer is one of the intake bench's servers, running.
type intakeServer struct {
	URL string
	s   *benchServer
	// closePool closes the naive design's pool.
	closePool func()
}

// Close stops the server.
func (s *intakeServer) Close() {
	s.s.close()
	if s.closePool != nil {
		s.closePool()
	}
}

// IntakeServerOptions are the options of `prereg bench intake-server`.
type IntakeServerOptions struct {
	Mode        string // one of IntakeServerModes
	DatabaseURL string // the bench's database (Intake creates it)
	Connections int    // the naive design's pool size
	CPUProfile  string // a CPU profile of the server's whole life
	HeapProfile string // the live heap when the server is told to stop
	// CPUs, when set, pins the server's process to these CPUs ("0",
	// "2,3"): the overload run keeps it off the generator's.
	CPUs string
}

// RunIntakeServer runs one of the intake bench's servers until ctx ends,
// and writes "ready URL" to ready once it serves: what `prereg bench
// intake-server` runs in a process of its own, so that neither the load
// generator's garbage collector or scheduler charges the server nor the
// other way round, and so that GOMAXPROCS and resident memory apply to the
// server alone.
func RunIntakeServer(ctx context.Context, s Setup, o IntakeServerOptions, ready io.Writer) error {
	if o.CPUs != "" {
		cpus, err := parseCPUList(o.CPUs)
		if err != nil {
			return err
		}
		if _, err := pinProcess(cpus); err != nil {
			return err
		}
	}
	stopProfile, err := StartCPUProfile(o.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	srv, err := serveIntake(ctx, s, o.Mode, o.DatabaseURL, o.Connections)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintln(ready, "ready "+srv.URL)
	<-ctx.Done()
	return WriteHeapProfile(o.HeapProfile)
}

// serveIntake starts one of the intake bench's servers on a loopback port.
func serveIntake(ctx context.Context, s Setup, mode, dbURL string, conns int) (*intakeServer, error) {
	out := &intakeServer{}
	var err error
	switch mode {
	case "bare":
		out.s, err = startBenchServer(http.HandlerFunc(serveBare))
	case "bare_fasthttp":
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			srv := &fasthttp.Server{Handler: serveBareFast, NoDefaultServerHeader: true}
			go func() { _ = srv.Serve(ln) }()
			out.s = &benchServer{url: "http://" + ln.Addr().String(), srv: closerFunc(srv.Shutdown)}
		}
	case "naive":
		var pool *pgxpool.Pool
		if pool, err = naivePool(ctx, dbURL, conns); err == nil {
			out.closePool = pool.Close
			if out.s, err = startBenchServer(naiveHandler(pool)); err != nil {
				pool.Close()
			}
		}
	case "intake", "intake_synced", "overload", "refuse":
		app.TuneGC([]app.Role{app.RoleIntake}, s.GC) // as `prereg serve --roles intake`
		out.s, err = startBenchIntake(ctx, s, mode, dbURL)
	default:
		return nil, fmt.Errorf("no bench server %q (want one of %s)", mode, strings.Join(IntakeServerModes, ", "))
	}
	if err != nil {
		return nil, err
	}
	out.URL = out.s.url
	return out, nil
}
