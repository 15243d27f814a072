// Package postgres is prereg's PostgreSQL layer: finding a server (the
// configured one, the local one, or a private cluster started from the
// installed binaries), the embedded numbered migrations, and the stores
// behind the stages' interfaces. Driver errors become domain errors here.
package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/config"
)

// LocalURL is the server every development and CI machine runs.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PrivateURL is the DATABASE_URL value that forces a private cluster.
const PrivateURL = "private"

//go:embed migrations/*.sql
var migrations embed.FS

// Server is a PostgreSQL server prereg can create databases on. Close stops
// it when prereg started it (a private cluster) and does nothing otherwise.
type Server struct {
	// URL points at the server's maintenance database.
	URL     string
	cluster *Cluster
}

// Close stops a private cluster; it is safe to call more than once.
func (s *Server) Close() error {
	if s == nil || s.cluster == nil {
		return nil
	}
	return s.cluster.Stop()
}

// Private reports whether prereg started this server itself.
func (s *Server) Private() bool { return s != nil && s.cluster != nil }

// DatabaseURL is the URL of database name on this server.
func (s *Server) DatabaseURL(name string) string { return WithDatabase(s.URL, name) }

// FindServer resolves the server prereg should use: databaseURL when set
// (except "private"), else the local server on 127.0.0.1:5432 when it
// answers, else a private cluster started from the installed binaries.
func FindServer(ctx context.Context, databaseURL string, log *slog.Logger) (*Server, error) {
	if databaseURL != "" && databaseURL != PrivateURL {
		return &Server{URL: databaseURL}, nil
	}
	if databaseURL == "" {
		if err := Ping(ctx, LocalURL); err == nil {
			return &Server{URL: LocalURL}, nil
		}
	}
	c, err := StartCluster(ctx, ClusterConfig{Logger: log})
	if err != nil {
		if databaseURL == "" {
			return nil, fmt.Errorf("no PostgreSQL: nothing answers on 127.0.0.1:5432 and a private cluster could not start (%w); set DATABASE_URL, start a server, or install one (apt-get install -y postgresql)", err)
		}
		return nil, fmt.Errorf("start private cluster: %w", err)
	}
	return &Server{URL: c.URL(), cluster: c}, nil
}

// Ping connects once to check that a server answers.
func Ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return conn.Close(ctx)
}

// WithDatabase returns dsn with its database replaced by name. It accepts
// URLs and key=value strings.
func WithDatabase(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// CreateDatabase creates database name on the server at adminURL.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to create database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, closing its connections first.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to drop database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// Open connects a pool to dsn and checks that it answers.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping %s: %w", config.RedactURL(dsn), err)
	}
	return pool, nil
}

// Migrate applies the embedded migrations that the database lacks, each in
// its own transaction, under an advisory lock so that concurrent processes
// do not race. It returns the versions it applied. Before applying anything
// it checks the migrations already applied against their SHA-256 checksums
// (VerifySchema): a migration edited after it shipped is an error naming
// the file, not a schema that quietly differs from the files.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	files, err := Migrations()
	if err != nil {
		return nil, err
	}
	return migrate(ctx, pool, files)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, files []Migration) ([]int, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: acquire: %w", err)
	}
	defer conn.Release()
	const lock = 7_267_534_001 // arbitrary, prereg's own
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lock) //nolint:errcheck // released with the session anyway
	// The checksum column came after the table: a database migrated
	// before it gets the column here, its rows a checksum below.
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
		ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied, err := appliedMigrations(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	if err := verify(files, applied); err != nil {
		return nil, err
	}
	// Rows written before checksums existed record no text: they take the
	// checksum of the file as it is now, the best evidence there is, and
	// are checked against it from then on.
	for _, m := range files {
		if a, ok := applied[m.Version]; ok && a.Checksum == "" {
			if _, err := conn.Exec(ctx, "UPDATE schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL", m.Version, m.Checksum); err != nil {
				return nil, fmt.Errorf("migrate: record checksum of %s: %w", m.Name, err)
			}
		}
	}
	var done []int
	for _, m := range files {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}

// VerifySchema checks the migrations a database has applied against the
// embedded files, without changing anything: every process that opens the
// schema without migrating it (serve, check) calls it, so that a binary
// never runs on a schema its files do not describe. A database without
// schema_migrations has applied nothing and passes; rows from before
// checksums existed pass until `prereg migrate` records theirs.
func VerifySchema(ctx context.Context, pool *pgxpool.Pool) error {
	files, err := Migrations()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("verify schema: acquire: %w", err)
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("verify schema: %w", err)
	}
	if !exists {
		return nil
	}
	applied, err := appliedMigrations(ctx, conn.Conn())
	if err != nil {
		return err
	}
	return verify(files, applied)
}

// ErrMigrationEdited is the error (wrapped, naming the file) of a
// migration whose text differs from the text the database applied.
var ErrMigrationEdited = errors.New("migration edited after it was applied")

// appliedMigration is one row of schema_migrations; Checksum is "" for a
// row written before checksums existed.
type appliedMigration struct {
	Name     string
	Checksum string
}

func appliedMigrations(ctx context.Context, conn *pgx.Conn) (map[int]appliedMigration, error) {
	// to_jsonb reads the checksum whether or not the column exists yet
	// (VerifySchema on a database that no checksum-aware binary migrated).
	rows, err := conn.Query(ctx, "SELECT version, name, coalesce(to_jsonb(m) ->> 'checksum', '') FROM schema_migrations m")
	if err != nil {
		return nil, fmt.Errorf("migrate: list applied: %w", err)
	}
	applied := map[int]appliedMigration{}
	for rows.Next() {
		var v int
		var a appliedMigration
		if err := rows.Scan(&v, &a.Name, &a.Checksum); err != nil {
			return nil, fmt.Errorf("migrate: scan: %w", err)
		}
		applied[v] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: list applied: %w", err)
	}
	return applied, nil
}

// verify checks each applied migration that has a checksum against its
// file. A version the files do not have (a database migrated by a newer
// binary) is left alone: that binary owns it.
func verify(files []Migration, applied map[int]appliedMigration) error {
	var errs []error
	for _, m := range files {
		a, ok := applied[m.Version]
		if !ok || a.Checksum == "" || a.Checksum == m.Checksum || slices.Contains(earlierChecksums[m.Name], a.Checksum) {
			continue
		}
		errs = append(errs, fmt.Errorf("%w: %s (applied as %s, sha256 %s; the file's is %s): put the applied text back and add a new migration for the change",
			ErrMigrationEdited, m.Name, a.Name, a.Checksum, m.Checksum))
	}
	return errors.Join(errs...)
}

// earlierChecksums are the SHA-256 checksums of texts that a migration had
// when it shipped, before an edit that gave it its present text. The
// edits changed nothing a later migration or the code relies on, so a
// database that applied an earlier text is accepted rather than refused:
//
//   - 0004_allocation.sql first shipped without its last statement,
//     ALTER TABLE slots SET (fillfactor = 70). Without it the slots'
//     updates are less often HOT: slower allocation writes, same data.
//   - 0005_notify.sql first created an index outbox_appointment on
//     (appointment_id, version DESC), which the outbox's unique key on
//     the same columns already gives; a second text changed a comment.
//     The extra index costs some writes and changes no answer.
//
// Only databases migrated by a binary that recorded such a checksum carry
// one; rows from before checksums existed take the present text's.
var earlierChecksums = map[string][]string{
	"0004_allocation.sql": {
		"b34a402d3437afac849f8137f7a2304dfa9c16dec771e5256b2f13d345e1d7fd",
	},
	"0005_notify.sql": {
		"bd0eb6d60226158e33c0c6227719a1c3bb22948c91376a0b6776bf1f3ad0345c",
		"9cd345b007deaf84a96d48bead93d372a151d1008e41975b2c6cdfa1360a30f0",
	},
}

// Migration is one embedded SQL file, named NNNN_what.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
	// Checksum is the hex SHA-256 of SQL, recorded when the migration is
	// applied and compared at every start after.
	Checksum string
}

// Migrations lists the embedded migrations in order.
func Migrations() ([]Migration, error) { return readMigrations(migrations, "migrations") }

func readMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: name, SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share a number", out[i-1].Name, out[i].Name)
		}
	}
	return out, nil
}

// IsUniqueViolation reports whether err is PostgreSQL's unique_violation.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// freePort asks the kernel for a free TCP port on loopback.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
