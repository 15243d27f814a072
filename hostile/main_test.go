package hostile_test

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

var (
	full = flag.Bool("hostile.full", false, "run the full hostile corpus and the bigger personal-data scan")
	seed = flag.Int64("hostile.seed", 1, "seed of the generated corpus (0: from the clock, printed)")
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// target is one HTTP listener under attack.
type target struct {
	name string // "fast" or "nethttp"
	addr string // host:port
}

// stage is a running world (every role, intake's fasthttp front) and a
// second process without intake (net/http) on the same database and
// JetStream, with a few valid submissions to mutate.
type stage struct {
	w       *world.World
	targets []target
	// bases are bodies of submissions the surge expects a 202 for: an
	// otherwise valid intent, so that one mutation is all that is wrong.
	bases   [][]byte
	auditor string // an auditor's bearer token
	// webhook is the delivery-report secret of the net/http process.
	webhook []byte
}

func setup(t *testing.T) *stage {
	t.Helper()
	srv := pgtest.Server(t)
	// The services run until the test ends: their context with them.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg, err := config.FromEnv(func(string) string { return "" }, false)
	require.NoError(t, err)
	now := time.Now()
	w, err := world.Start(ctx, world.Options{Config: cfg, DatabaseURL: srv.URL, Clinics: 20, Seed: 7, Now: now})
	require.NoError(t, err)
	t.Cleanup(w.Close)

	// The process without intake: the admin role, served by net/http.
	webhook := []byte(keys.Random(32))
	sys, err := app.New(app.Options{
		Roles:  []app.Role{app.RoleAdmin},
		Pool:   w.Pool,
		NC:     w.NC,
		Config: cfg,
		Notify: app.NotifyOptions{WebhookSecret: webhook},
	})
	require.NoError(t, err)
	require.NoError(t, sys.Start(ctx))
	t.Cleanup(sys.Stop)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := sys.NewServer(slog.New(slog.DiscardHandler))
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			_ = hs.Close()
		}
	})
	_, isNetHTTP := hs.(*http.Server)
	require.True(t, isNetHTTP, "a process without intake serves with net/http")

	st := &stage{w: w, webhook: webhook, targets: []target{
		{name: "fast", addr: w.BaseURL[len("http://"):]},
		{name: "nethttp", addr: ln.Addr().String()},
	}}
	for _, tok := range cfg.AdminTokens.Tokens() {
		if role, tk, _ := strings.Cut(tok, ":"); role == string(config.RoleAuditor) {
			st.auditor = tk
		}
	}
	pop, err := sim.NewPopulation(7, 40, w.Campaign.Cohort)
	require.NoError(t, err)
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: 60, Seed: 7, Campaign: w.Campaign, Providers: w.IdPs, Now: now})
	require.NoError(t, err)
	for _, s := range surge.Submissions {
		if s.Want.Status == http.StatusAccepted {
			st.bases = append(st.bases, s.Body)
		}
	}
	require.NotEmpty(t, st.bases, "the surge has submissions that should be accepted")
	return st
}
