// Package pgtest gives tests a fresh, migrated PostgreSQL database of their
// own on the real server: TEST_DATABASE_URL when set ("private" forces a
// private cluster), else the local server on 127.0.0.1:5432, else a private
// cluster started from the installed binaries. Databases are dropped when
// the test ends; a private cluster is stopped by Main.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/prereg/prereg/postgres"
)

var (
	once   sync.Once
	server *postgres.Server
	errSrv error
)

// Main runs a package's tests and stops a private cluster afterwards. Use it
// as: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// VerifyMain runs a package's tests like Main and then fails them if any
// goroutine outlives them (goleak): a worker, pool or connection a test
// forgot to stop. opts ignore the goroutines a package's dependencies
// genuinely keep; each needs a comment saying why.
func VerifyMain(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, append(opts, goleak.Cleanup(func(code int) {
		Stop()
		os.Exit(code)
	}))...)
}

// IgnoreFastHTTP is the goleak options of a package whose tests run
// intake's fasthttp front (prereg serve, the world, the deploy trial).
func IgnoreFastHTTP() []goleak.Option {
	return []goleak.Option{
		// fasthttp's worker pool cleaner notices its server stopped only
		// when it wakes, up to MaxIdleWorkerDuration (10 s) later.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// fasthttp keeps the Date header's clock in one goroutine per
		// process, started with the first server and never stopped.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	}
}

// Stop stops a private cluster the tests started (nothing for a shared
// server), for a TestMain that exits through something else, such as
// goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { pgtest.Stop() })).
func Stop() {
	if server != nil {
		if err := server.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
}

// Server returns the PostgreSQL server the tests use, failing the test with
// a message that says how to get one when there is none.
func Server(tb testing.TB) *postgres.Server {
	tb.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server, errSrv = postgres.FindServer(ctx, os.Getenv("TEST_DATABASE_URL"), nil)
	})
	if errSrv != nil {
		tb.Fatalf("pgtest: %v\nStart PostgreSQL (pg_ctlcluster 15 main start), set TEST_DATABASE_URL, or install the server binaries (apt-get install -y postgresql).", errSrv)
	}
	return server
}

// DB is a fresh database of one test.
type DB struct {
	Pool *pgxpool.Pool
	URL  string
	Name string
}

// New creates a fresh database with the schema applied; it is dropped when
// the test ends.
func New(tb testing.TB) *DB {
	tb.Helper()
	db := NewEmpty(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := postgres.Migrate(ctx, db.Pool); err != nil {
		tb.Fatalf("pgtest: migrate: %v", err)
	}
	return db
}

// NewEmpty creates a fresh database without the schema.
func NewEmpty(tb testing.TB) *DB {
	tb.Helper()
	srv := Server(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "prereg_test_" + hex.EncodeToString(b[:])
	if err := postgres.CreateDatabase(ctx, srv.URL, name); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	url := srv.DatabaseURL(name)
	pool, err := postgres.Open(ctx, url)
	if err != nil {
		_ = postgres.DropDatabase(ctx, srv.URL, name)
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := postgres.DropDatabase(ctx, srv.URL, name); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return &DB{Pool: pool, URL: url, Name: name}
}
