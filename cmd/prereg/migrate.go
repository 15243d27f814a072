package main

import (
	"context"
	"fmt"

	"github.com/prereg/prereg/postgres"
)

func init() {
	register(command{name: "migrate", summary: "apply the database schema", run: cmdMigrate})
}

func cmdMigrate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "migrate", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pool, closeDB, err := env.Database(ctx, false)
	if err != nil {
		return err
	}
	defer closeDB()
	applied, err := postgres.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(env.Stdout, "schema up to date")
		return nil
	}
	fmt.Fprintf(env.Stdout, "applied migrations %v\n", applied)
	return nil
}
