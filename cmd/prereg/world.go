package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
)

// world is prereg running on one machine with its simulated surroundings:
// a database of its own, JetStream (embedded unless NATS_URL is set), the
// simulated identity providers and SMS gateway each on a loopback
// listener, the demo campaign loaded, and every role in process. `prereg
// demo` drives a surge through it; `prereg dev` leaves it running.
type world struct {
	log      *slog.Logger
	cfg      config.Config
	db       *scratchDB
	pool     *pgxpool.Pool
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *stream.Embedded
	natsDir  string

	idps     map[string]*sim.IdP
	gateway  *sim.Gateway
	campaign *campaign.Campaign

	sys     *app.System
	baseURL string // the intake and admin HTTP server

	closers []func()
}

// worldOptions configure startWorld.
type worldOptions struct {
	Addr     string // HTTP listen address of the system; 127.0.0.1:0 when empty
	Keep     bool   // keep the database (and print its URL) instead of dropping it
	Clinics  int    // clinics in the inventory
	Capacity float64
	Seed     int64
	Now      time.Time
	// SyncAlways: the embedded JetStream fsyncs every write before its ack
	// (sync_interval: always) and intake uses group commit; with NATS_URL,
	// group commit only (the server's sync_interval is its own setting).
	SyncAlways bool
}

// providerNames are the demo's identity providers (Korea's main two).
var providerNames = []string{"pass", "kakao"}

func startWorld(ctx context.Context, env *Env, o worldOptions) (w *world, err error) {
	w = &world{log: env.Logger, idps: map[string]*sim.IdP{}}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	cfg, _, err := env.Config(false)
	if err != nil {
		return nil, err
	}
	w.cfg = cfg

	// A fresh database of its own on the configured server.
	if w.db, err = env.ScratchDatabase(ctx, "prereg_demo"); err != nil {
		return nil, err
	}
	w.db.Keep = o.Keep
	w.closers = append(w.closers, w.db.Close)
	w.pool = w.db.Pool

	// JetStream: NATS_URL, else embedded in a temporary folder.
	if url := cfg.NatsURL; url != "" {
		if w.nc, err = stream.Connect(ctx, url, env.Logger); err != nil {
			return nil, err
		}
	} else {
		if w.natsDir, err = os.MkdirTemp("", "prereg-nats-"); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		w.closers = append(w.closers, func() { os.RemoveAll(w.natsDir) })
		if w.embedded, err = stream.StartEmbedded(stream.EmbeddedConfig{StoreDir: w.natsDir, Port: -1, SyncAlways: o.SyncAlways}); err != nil {
			return nil, err
		}
		w.closers = append(w.closers, w.embedded.Shutdown)
		if w.nc, err = w.embedded.Connect(); err != nil {
			return nil, err
		}
	}
	w.closers = append(w.closers, w.nc.Close)
	if w.js, err = jetstream.New(w.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}

	// The system's own listener first: the gateway posts delivery reports
	// to it.
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	w.baseURL = "http://" + ln.Addr().String()

	// Simulated identity providers and SMS gateway on loopback.
	providerURLs := map[string]string{}
	for _, name := range providerNames {
		idp := sim.NewIdP(name, sim.DemoTokenSecret(name), sim.DemoCISecret)
		u, stop, err := serveLoopback(idp.Handler())
		if err != nil {
			ln.Close()
			return nil, err
		}
		w.closers = append(w.closers, stop)
		w.idps[name], providerURLs[name] = idp, u
	}
	webhookSecret := []byte(keys.Random(32))
	w.gateway = sim.NewGateway(sim.GatewayConfig{
		ReportURL:    w.baseURL + "/v1/sms/reports",
		ReportSecret: webhookSecret,
		ReportDelay:  50 * time.Millisecond,
		// Reports are posted one by one; enough senders that they keep up
		// with notify (a real gateway batches or fans them out too).
		ReportWorkers: 32,
		Logger:        env.Logger.With("sim", "sms"),
	})
	w.closers = append(w.closers, w.gateway.Close)
	gwURL, stopGW, err := serveLoopback(w.gateway.Handler())
	if err != nil {
		ln.Close()
		return nil, err
	}
	w.closers = append(w.closers, stopGW)

	// The demo campaign, with a clinic inventory over the 252 regions.
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	clinics := sim.Inventory(sim.InventoryConfig{Seed: uint64(o.Seed), Clinics: o.Clinics, CapacityScale: o.Capacity})
	if w.campaign, err = sim.DemoCampaign(now, providerURLs, clinics); err != nil {
		ln.Close()
		return nil, err
	}
	if _, err := (&postgres.CampaignStore{Pool: w.pool}).Load(ctx, w.campaign); err != nil {
		ln.Close()
		return nil, err
	}

	// Every role in process.
	w.sys, err = app.New(app.Options{
		Roles:  app.AllRoles,
		Logger: env.Logger,
		Pool:   w.pool,
		NC:     w.nc,
		Config: cfg,
		// The load generator stands in for the citizens' network: it sends
		// each household's address in X-Forwarded-For from loopback, so
		// loopback is the trusted proxy and the per-address and per-device
		// limits apply as they would in production (bots get 429s; the
		// truth knows).
		Intake: app.IntakeOptions{
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
			GroupCommit:    o.SyncAlways,
		},
		Stream: stream.Config{AtomicBatches: o.SyncAlways},
		Notify: app.NotifyOptions{GatewayURL: gwURL, WebhookSecret: webhookSecret, Rate: 5000, Concurrency: 32},
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := w.sys.Start(ctx); err != nil {
		ln.Close()
		return nil, err
	}
	w.closers = append(w.closers, w.sys.Stop)
	srv := w.sys.NewServer(env.Logger)
	go func() { _ = srv.Serve(ln) }()
	w.closers = append(w.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return w, nil
}

// Close stops everything in reverse order of start.
func (w *world) Close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
	w.closers = nil
}

// serveLoopback serves h on a free loopback port.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// pipelineState describes where intents wait: for a stalled demo's error.
func (w *world) pipelineState(ctx context.Context) string {
	var b strings.Builder
	for _, name := range []string{stream.Submitted, stream.Verified} {
		s, err := w.js.Stream(ctx, name)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v; ", name, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v; ", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s: %d messages (last seq %d)", name, info.State.Msgs, info.State.LastSeq)
		for ci := range s.ListConsumers(ctx).Info() {
			fmt.Fprintf(&b, ", consumer %s: %d pending, %d unacked, %d redelivered", ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
		}
		b.WriteString("; ")
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// serveUntilDone serves on ln until ctx ends (or the server fails), then
// shuts the server down with a short grace: the sim commands' main loop.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
