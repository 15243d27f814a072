// Package world runs prereg on one machine with its simulated
// surroundings: a database of its own, JetStream (embedded unless a NATS
// URL is given), the simulated identity providers and SMS gateway each on
// a loopback listener, the demo campaign loaded, and every role in process
// through app. `prereg demo` drives a surge through it (Demo); `prereg dev`
// leaves it running for a browser.
//
// It is the development and demonstration side of prereg: it imports sim,
// which production code never does.
package world

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
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

// World is prereg running with its simulated surroundings.
type World struct {
	Config   config.Config
	DB       *ScratchDB
	Pool     *pgxpool.Pool
	NC       *nats.Conn
	JS       jetstream.JetStream
	Embedded *stream.Embedded // nil with Options.NATSURL

	IdPs     map[string]*sim.IdP
	Gateway  *sim.Gateway
	Campaign *campaign.Campaign

	System  *app.System // nil with Options.Elsewhere
	BaseURL string      // the intake and admin HTTP server
	// GatewayURL is the simulated SMS gateway's base URL, and
	// WebhookSecret what it signs its delivery reports with: what a
	// notify and admin role run elsewhere is configured with.
	GatewayURL    string
	WebhookSecret []byte

	log     *slog.Logger
	closers []func()
}

// Options configure Start.
type Options struct {
	// Config carries the keys and admin tokens (config.FromEnv without
	// required secrets generates them).
	Config config.Config
	// DatabaseURL names the PostgreSQL server the world's scratch database
	// is created on (empty: the local server, else a private cluster).
	DatabaseURL string
	// NATSURL is a JetStream server to use; empty: an embedded one.
	NATSURL string
	Logger  *slog.Logger

	Addr    string // HTTP listen address of the system; 127.0.0.1:0 when empty
	Keep    bool   // keep the database (and print its URL) instead of dropping it
	Clinics int    // clinics in the inventory
	// Submissions is the size of the surge the world is for: the
	// campaign's expected population, which sizes dedupe's Bloom filters,
	// is at least the population such a surge draws from (0: the demo
	// campaign's own figure).
	Submissions int
	Capacity    float64
	Seed        int64
	Now         time.Time
	// SyncAlways: the embedded JetStream fsyncs every write before its ack
	// (sync_interval: always) and intake uses group commit; with NATSURL,
	// group commit only (the server's sync_interval is its own setting).
	SyncAlways bool
	// OpenFor is how long the demo campaign's window "open" stays open
	// from now (0: sim.DemoOpenFor).
	OpenFor time.Duration
	// Elsewhere builds the surroundings only: the roles run in processes
	// of their own (`prereg bench scale`), which listen on Addr in turn,
	// so Addr must name a port, and the gateway posts its delivery
	// reports there.
	Elsewhere bool
}

// ProviderNames are the demo's identity providers (Korea's main two).
var ProviderNames = []string{"pass", "kakao"}

// Start builds and starts a world; Close stops it.
func Start(ctx context.Context, o Options) (w *World, err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w = &World{log: log, Config: o.Config, IdPs: map[string]*sim.IdP{}}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()

	// A fresh database of its own on the configured server.
	if w.DB, err = OpenScratch(ctx, o.DatabaseURL, "prereg_demo", log); err != nil {
		return nil, err
	}
	w.DB.Keep = o.Keep
	w.closers = append(w.closers, w.DB.Close)
	w.Pool = w.DB.Pool

	// JetStream: the given server, else embedded in a temporary folder.
	if o.NATSURL != "" {
		if w.NC, err = stream.Connect(ctx, o.NATSURL, log); err != nil {
			return nil, err
		}
	} else {
		if w.Embedded, err = stream.StartEmbedded(stream.EmbeddedConfig{Port: -1, SyncAlways: o.SyncAlways}); err != nil {
			return nil, err
		}
		w.closers = append(w.closers, w.Embedded.Shutdown)
		if w.NC, err = w.Embedded.Connect(); err != nil {
			return nil, err
		}
	}
	w.closers = append(w.closers, w.NC.Close)
	if w.JS, err = jetstream.New(w.NC); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}

	// The system's own listener first: the gateway posts delivery reports
	// to it.
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener // nil Elsewhere: the roles there bind addr
	closeLn := func() {
		if ln != nil {
			ln.Close()
		}
	}
	if o.Elsewhere {
		w.BaseURL = "http://" + addr
	} else {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		w.BaseURL = "http://" + ln.Addr().String()
	}

	// Simulated identity providers and SMS gateway on loopback.
	providerURLs := map[string]string{}
	for _, name := range ProviderNames {
		idp := sim.NewIdP(name, sim.DemoTokenSecret(name), sim.DemoCISecret)
		u, stop, err := ServeLoopback(idp.Handler())
		if err != nil {
			closeLn()
			return nil, err
		}
		w.closers = append(w.closers, stop)
		w.IdPs[name], providerURLs[name] = idp, u
	}
	webhookSecret := []byte(keys.Random(32))
	w.WebhookSecret = webhookSecret
	w.Gateway = sim.NewGateway(sim.GatewayConfig{
		ReportURL:    w.BaseURL + "/v1/sms/reports",
		ReportSecret: webhookSecret,
		ReportDelay:  50 * time.Millisecond,
		// Reports are posted one by one; enough senders that they keep up
		// with notify (a real gateway batches or fans them out too).
		ReportWorkers: 32,
		Logger:        log.With("sim", "sms"),
	})
	w.closers = append(w.closers, w.Gateway.Close)
	gwURL, stopGW, err := ServeLoopback(w.Gateway.Handler())
	if err != nil {
		closeLn()
		return nil, err
	}
	w.closers = append(w.closers, stopGW)
	w.GatewayURL = gwURL

	// The demo campaign, with a clinic inventory over the 252 regions.
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	clinics := sim.Inventory(sim.InventoryConfig{Seed: uint64(o.Seed), Clinics: o.Clinics, CapacityScale: o.Capacity})
	if w.Campaign, err = sim.DemoCampaignOpenFor(now, o.OpenFor, providerURLs, clinics); err != nil {
		closeLn()
		return nil, err
	}
	if o.Submissions > 0 {
		// Filters sized for fewer people than come fill up, and every false
		// positive costs dedupe a database lookup.
		w.Campaign.Dedupe.ExpectedPeople = max(w.Campaign.Dedupe.ExpectedPeople, sim.PeopleFor(o.Submissions, w.Campaign, now))
	}
	if _, err := (&postgres.CampaignStore{Pool: w.Pool}).Load(ctx, w.Campaign); err != nil {
		closeLn()
		return nil, err
	}

	if o.Elsewhere {
		return w, nil
	}

	// Every role in process.
	w.System, err = app.New(app.Options{
		Roles:  app.AllRoles,
		Logger: log,
		Pool:   w.Pool,
		NC:     w.NC,
		Config: o.Config,
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
		closeLn()
		return nil, err
	}
	if err := w.System.Start(ctx); err != nil {
		closeLn()
		return nil, err
	}
	w.closers = append(w.closers, w.System.Stop)
	srv := w.System.NewServer(log)
	go func() { _ = srv.Serve(ln) }()
	w.closers = append(w.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return w, nil
}

// Close stops everything in reverse order of start.
func (w *World) Close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
	w.closers = nil
}

// ServeLoopback serves h on a free loopback port and returns its base URL
// and the function that shuts it down.
func ServeLoopback(h http.Handler) (string, func(), error) {
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

// PipelineState describes where intents wait: for a stalled demo's error.
func (w *World) PipelineState(ctx context.Context) string {
	var b strings.Builder
	for _, name := range []string{stream.Submitted, stream.Verified} {
		s, err := w.JS.Stream(ctx, name)
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
