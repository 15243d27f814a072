package postgres_test

import (
	"context"
	"io/fs"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
)

// migrationFS is the embedded migrations with some files replaced.
func migrationFS(tb testing.TB, replace map[string]string) fs.FS {
	tb.Helper()
	files, err := postgres.Migrations()
	require.NoError(tb, err)
	m := fstest.MapFS{}
	for _, f := range files {
		m["migrations/"+f.Name] = &fstest.MapFile{Data: []byte(f.SQL)}
	}
	for name, text := range replace {
		_, ok := m["migrations/"+name]
		require.True(tb, ok, "%s is not an embedded migration", name)
		m["migrations/"+name] = &fstest.MapFile{Data: []byte(text)}
	}
	return m
}

func migrateWith(ctx context.Context, tb testing.TB, db *pgtest.DB, fsys fs.FS) ([]int, error) {
	tb.Helper()
	files, err := postgres.ReadMigrations(fsys, "migrations")
	require.NoError(tb, err)
	return postgres.MigrateFiles(ctx, db.Pool, files)
}

func TestMigrateFreshDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := pgtest.NewEmpty(t)
	require.NoError(t, postgres.VerifySchema(ctx, db.Pool), "an empty database has applied nothing to mismatch")

	applied, err := postgres.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	files, err := postgres.Migrations()
	require.NoError(t, err)
	require.Len(t, applied, len(files))

	for _, f := range files {
		var sum string
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT checksum FROM schema_migrations WHERE version = $1", f.Version).Scan(&sum))
		require.Equal(t, f.Checksum, sum, "%s records the checksum of its text", f.Name)
	}
	require.NoError(t, postgres.VerifySchema(ctx, db.Pool))
	again, err := postgres.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.Empty(t, again)
}

func TestMigrateRefusesAnEditedMigration(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := pgtest.New(t)

	files, err := postgres.Migrations()
	require.NoError(t, err)
	edited := migrationFS(t, map[string]string{"0003_dedupe.sql": files[1].SQL + "\nCREATE INDEX edited ON registrations (campaign);\n"})
	require.Equal(t, "0003_dedupe.sql", files[1].Name)
	_, err = migrateWith(ctx, t, db, edited)
	require.ErrorIs(t, err, postgres.ErrMigrationEdited)
	require.ErrorContains(t, err, "0003_dedupe.sql")

	// The same mismatch seen from the other side: the database applied a
	// text the embedded file no longer has. Serve and check refuse it too.
	_, err = db.Pool.Exec(ctx, "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 6")
	require.NoError(t, err)
	err = postgres.VerifySchema(ctx, db.Pool)
	require.ErrorIs(t, err, postgres.ErrMigrationEdited)
	require.ErrorContains(t, err, "0006_dedupe_write_path.sql")
	_, err = postgres.Migrate(ctx, db.Pool)
	require.ErrorIs(t, err, postgres.ErrMigrationEdited)
}

// A database whose schema_migrations predates checksums gets the column
// and, for every row, the checksum of the present text.
func TestMigrateBackfillsChecksums(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := pgtest.New(t)
	_, err := db.Pool.Exec(ctx, "ALTER TABLE schema_migrations DROP COLUMN checksum")
	require.NoError(t, err)
	require.NoError(t, postgres.VerifySchema(ctx, db.Pool), "rows without a checksum pass until migrate records one")

	applied, err := postgres.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.Empty(t, applied)
	var missing int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE checksum IS NULL").Scan(&missing))
	require.Zero(t, missing)
	require.NoError(t, postgres.VerifySchema(ctx, db.Pool))
}

// The texts 0004 and 0005 shipped with before their edits are known
// earlier versions: a database that applied them is accepted.
func TestMigrateAcceptsTheTextsThatShippedFirst(t *testing.T) {
	t.Parallel()
	read := func(path string) string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	for name, replace := range map[string]map[string]string{
		"first": {
			"0004_allocation.sql": read("testdata/shipped-first/0004_allocation.sql"),
			"0005_notify.sql":     read("testdata/shipped-first/0005_notify.sql"),
		},
		"second": {"0005_notify.sql": read("testdata/shipped-second/0005_notify.sql")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db := pgtest.NewEmpty(t)
			_, err := migrateWith(ctx, t, db, migrationFS(t, replace))
			require.NoError(t, err)
			require.NoError(t, postgres.VerifySchema(ctx, db.Pool))
			applied, err := postgres.Migrate(ctx, db.Pool)
			require.NoError(t, err)
			require.Empty(t, applied)
		})
	}
}
