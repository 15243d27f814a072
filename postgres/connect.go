package postgres

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultDatabase is the database prereg uses on the local server or a
// private cluster when DATABASE_URL does not name one.
const DefaultDatabase = "prereg"

// Connect opens the database a process works on. databaseURL names it;
// empty, it is database DefaultDatabase on the local server (created when
// missing), else on a private cluster that the returned close function
// stops (FindServer). With migrate the schema is applied; without, the
// applied migrations are checked against this binary's files
// (VerifySchema), so that a process never runs on a schema it does not
// know.
func Connect(ctx context.Context, databaseURL string, migrate bool, log *slog.Logger) (*pgxpool.Pool, func(), error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := FindServer(ctx, databaseURL, log)
	if err != nil {
		return nil, nil, err
	}
	url := srv.URL
	if srv.URL == LocalURL || srv.Private() {
		url = srv.DatabaseURL(DefaultDatabase)
		if err := CreateDatabase(ctx, srv.URL, DefaultDatabase); err != nil && !isDuplicateDatabase(err) {
			srv.Close()
			return nil, nil, err
		}
	}
	pool, err := Open(ctx, url)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	closeAll := func() {
		pool.Close()
		if err := srv.Close(); err != nil {
			log.Warn("stop private cluster", slog.Any("err", err))
		}
	}
	if migrate {
		_, err = Migrate(ctx, pool)
	} else {
		err = VerifySchema(ctx, pool)
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return pool, closeAll, nil
}

// isDuplicateDatabase reports PostgreSQL's duplicate_database error.
func isDuplicateDatabase(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == "42P04"
}
