// Package app wires prereg's roles into one running process: it takes the
// connections (PostgreSQL, JetStream), the keys and the admin tokens, starts
// the stages a process was asked to run, and serves their HTTP handlers,
// metrics and health checks. `prereg serve`, `dev`, `demo`, the benchmarks
// and the end-to-end tests all run the same System.
//
// Each role's wiring lives in its own file (intake.go, verify.go, …).
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/worker"
)

// Role is one of the process roles of `prereg serve --roles`.
type Role string

// The roles of docs/DESIGN.md, "CLI" (`prereg serve --roles`).
const (
	RoleIntake Role = "intake"
	RoleVerify Role = "verify"
	RoleDedupe Role = "dedupe"
	RoleNotify Role = "notify"
	RoleAdmin  Role = "admin" // the admin API, the console and the delivery-report webhook
)

// AllRoles is every role, in the order data flows.
var AllRoles = []Role{RoleIntake, RoleVerify, RoleDedupe, RoleNotify, RoleAdmin}

// ParseRoles parses "intake,verify" into roles.
func ParseRoles(s string) ([]Role, error) {
	var out []Role
	for _, p := range strings.Split(s, ",") {
		r := Role(strings.TrimSpace(p))
		if r == "" {
			continue
		}
		if r == "all" {
			return slices.Clone(AllRoles), nil
		}
		if !slices.Contains(AllRoles, r) {
			return nil, fmt.Errorf("unknown role %q (want some of intake, verify, dedupe, notify, admin, or all)", r)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no role given")
	}
	return out, nil
}

// Service is a long-running part of a role: started once, stopped once.
// Stop waits until the service has finished its work in flight.
type Service interface {
	Start(ctx context.Context) error
	Stop()
}

// Options configure a System. Pool, JetStream and Config are required.
type Options struct {
	Roles  []Role
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	NC     *nats.Conn
	Config config.Config
	Stream stream.Config
	Now    func() time.Time
	// Registry collects the process's metrics; a new one when nil.
	Registry *prometheus.Registry

	Intake IntakeOptions
	Verify VerifyOptions
	Dedupe DedupeOptions
	Notify NotifyOptions
}

// System is a running set of roles.
type System struct {
	opts     Options
	log      *slog.Logger
	pool     *pgxpool.Pool
	nc       *nats.Conn
	js       jetstream.JetStream
	hasher   *keys.Hasher
	sealer   *keys.Sealer
	registry *prometheus.Registry
	now      func() time.Time

	campaigns *postgres.CampaignStore
	// intake is the intake role's service, when the process runs it: its
	// fasthttp front serves the process's HTTP (NewServer).
	intake *intake.Service

	public *http.ServeMux // citizen side
	admin  *http.ServeMux // admin API, console, webhook
	// adminAPI guards the admin routes (tokens, audit log); nil without
	// the admin role.
	adminAPI *httpapi.Admin

	mu       sync.Mutex
	services []Service
	ready    []func(context.Context) error
	// workers are the started services that report a worker.State.
	workers  []stateful
	stopOnce sync.Once
}

// stateful is a service that says whether it can make progress.
type stateful interface {
	State() worker.State
}

// New builds a System; Start starts it.
func New(opts Options) (*System, error) {
	if opts.Pool == nil || opts.NC == nil {
		return nil, errors.New("app: a PostgreSQL pool and a NATS connection are required")
	}
	if len(opts.Config.HMACKeys) == 0 || len(opts.Config.EncKeys) == 0 {
		return nil, errors.New("app: HMAC and encryption keys are required")
	}
	js, err := jetstream.New(opts.NC)
	if err != nil {
		return nil, fmt.Errorf("app: jetstream: %w", err)
	}
	sealer, err := keys.NewSealer(opts.Config.EncKeys)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if opts.Config.AdminTokens == nil {
		opts.Config.AdminTokens = &config.AdminTokens{}
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &System{
		opts:      opts,
		log:       cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		pool:      opts.Pool,
		nc:        opts.NC,
		js:        js,
		hasher:    keys.NewHasher(opts.Config.HMACKeys...),
		sealer:    sealer,
		registry:  reg,
		now:       opts.Now,
		campaigns: &postgres.CampaignStore{Pool: opts.Pool, HMACKeyID: opts.Config.HMACKeys[0].ID},
		public:    http.NewServeMux(),
		admin:     http.NewServeMux(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	// Every process shows how far behind each stage is.
	if err := reg.Register(stream.NewLag(js)); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("app: metrics: %w", err)
		}
	}
	return s, nil
}

// Has reports whether the system runs a role.
func (s *System) Has(r Role) bool { return slices.Contains(s.opts.Roles, r) }

// Start declares the streams and starts every role. On error, what was
// started is stopped again.
func (s *System) Start(ctx context.Context) error {
	sc := s.opts.Stream
	sc.Logger = cmp.Or(sc.Logger, s.log)
	if err := stream.DeclareWhenReady(ctx, s.js, sc); err != nil {
		return err
	}
	starters := map[Role]func(context.Context) error{
		RoleIntake: s.startIntake,
		RoleVerify: s.startVerify,
		RoleDedupe: s.startDedupe,
		RoleNotify: s.startNotify,
		RoleAdmin:  s.startAdmin,
	}
	for _, r := range AllRoles {
		if !s.Has(r) {
			continue
		}
		if err := starters[r](ctx); err != nil {
			s.Stop()
			return fmt.Errorf("start %s: %w", r, err)
		}
		s.log.Info("role started", slog.String("role", string(r)))
	}
	return nil
}

// run starts a service and remembers it for Stop.
func (s *System) run(ctx context.Context, svc Service) error {
	if err := svc.Start(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.services = append(s.services, svc)
	if w, ok := svc.(stateful); ok {
		s.workers = append(s.workers, w)
	}
	s.mu.Unlock()
	return nil
}

// Stop stops the services in the order data flows, the order they were
// started in: intake first, so that nothing new arrives while verify,
// dedupe and notify finish what is in flight.
func (s *System) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		svcs := s.services
		s.mu.Unlock()
		for _, svc := range svcs {
			svc.Stop()
		}
	})
}

// Handler serves every HTTP route of the roles this process runs, plus
// /healthz, /readyz and /metrics.
func (s *System) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s.public)
	mux.Handle("/admin/", s.admin)
	mux.Handle("POST /v1/sms/reports", s.admin)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	return mux
}

// serveReady answers 200 when JetStream (and, for workers, PostgreSQL)
// answers now and every worker of the process's roles is running; it asks
// each time, so it turns true again without a restart. The body names
// what is wrong, then each worker's state: running, waiting on which
// dependency since when, or stopped.
func (s *System) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if _, err := s.js.AccountInfo(ctx); err != nil {
		problems = append(problems, "jetstream unreachable")
	}
	if s.Has(RoleVerify) || s.Has(RoleDedupe) || s.Has(RoleNotify) || s.Has(RoleAdmin) {
		if err := s.pool.Ping(ctx); err != nil {
			problems = append(problems, "postgresql unreachable")
		}
	}
	s.mu.Lock()
	ready, workers := slices.Clone(s.ready), slices.Clone(s.workers)
	s.mu.Unlock()
	for _, f := range ready {
		if err := f(ctx); err != nil {
			problems = append(problems, err.Error())
		}
	}
	states := make([]string, len(workers))
	for i, wk := range workers {
		st := wk.State()
		states[i] = st.String()
		if !st.Ready() {
			problems = append(problems, "not making progress: "+st.String())
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	body := "ready"
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		body = strings.Join(problems, "\n")
	}
	if len(states) > 0 {
		body += "\n\n" + strings.Join(states, "\n")
	}
	_, _ = w.Write([]byte(body + "\n"))
}

// Registry is the process's metrics registry.
func (s *System) Registry() *prometheus.Registry { return s.registry }

// JetStream is the system's JetStream context.
func (s *System) JetStream() jetstream.JetStream { return s.js }
