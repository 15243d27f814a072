package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/console"
)

// ConsoleStore reads the database's part of the console's samples: per
// campaign the decisions by kind and reason, the held decisions waiting
// for review, the outbox by state, the appointments and the intake pause,
// and the latest allocation runs. Counts only: no personal data. Each
// sample counts the decisions and the outbox afresh (a scan of each per
// sample, every console.DefaultEvery); the admin role runs on a handful
// of replicas at most.
type ConsoleStore struct {
	Pool *pgxpool.Pool
}

var _ console.Store = (*ConsoleStore)(nil)

// consoleRuns is how many allocation runs a sample lists.
const consoleRuns = 10

// Counts reads one sample's counts in one transaction, so that they agree
// with each other.
func (s *ConsoleStore) Counts(ctx context.Context, now time.Time) (console.Counts, error) {
	out := console.Counts{Campaigns: map[string]console.CampaignCount{}}
	err := pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		get := func(id string) console.CampaignCount {
			c, ok := out.Campaigns[id]
			if !ok {
				c = console.CampaignCount{Windows: []console.Window{}, Decisions: map[string]int64{}, Reasons: map[string]int64{}, Outbox: map[string]int64{}}
			}
			return c
		}
		rows, _ := tx.Query(ctx, `SELECT id, name FROM campaigns ORDER BY id`)
		var id, name string
		if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error {
			c := get(id)
			c.Name = name
			out.Campaigns[id] = c
			return nil
		}); err != nil {
			return fmt.Errorf("campaigns: %w", err)
		}
		var w console.Window
		rows, _ = tx.Query(ctx, `SELECT campaign, id, opens, closes FROM windows ORDER BY campaign, opens, id`)
		if _, err := pgx.ForEachRow(rows, []any{&id, &w.ID, &w.Opens, &w.Closes}, func() error {
			c := get(id)
			c.Windows = append(c.Windows, console.Window{ID: w.ID, Opens: w.Opens.UTC(), Closes: w.Closes.UTC()})
			out.Campaigns[id] = c
			return nil
		}); err != nil {
			return fmt.Errorf("windows: %w", err)
		}
		var kind, reason string
		var n, pending int64
		rows, _ = tx.Query(ctx, `
			SELECT campaign, kind, reason, count(*), count(*) FILTER (WHERE kind = 'held' AND review IS NULL)
			FROM decisions GROUP BY campaign, kind, reason`)
		if _, err := pgx.ForEachRow(rows, []any{&id, &kind, &reason, &n, &pending}, func() error {
			c := get(id)
			c.Decisions[kind] += n
			c.Reasons[kind+"/"+reason] += n
			c.Decided += n
			c.HeldPending += pending
			out.Campaigns[id] = c
			return nil
		}); err != nil {
			return fmt.Errorf("decisions: %w", err)
		}
		var state string
		rows, _ = tx.Query(ctx, `SELECT campaign, state, count(*) FROM outbox GROUP BY campaign, state`)
		if _, err := pgx.ForEachRow(rows, []any{&id, &state, &n}, func() error {
			c := get(id)
			c.Outbox[state] = n
			out.Campaigns[id] = c
			return nil
		}); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT campaign, count(*) FROM appointments WHERE status = 'scheduled' GROUP BY campaign`)
		if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			c := get(id)
			c.Appointments = n
			out.Campaigns[id] = c
			return nil
		}); err != nil {
			return fmt.Errorf("appointments: %w", err)
		}
		var p console.Pause
		rows, _ = tx.Query(ctx, `SELECT campaign, paused_at, reopens_at, paused_by FROM intake_pauses
			WHERE reopens_at IS NULL OR reopens_at > $1`, now)
		if _, err := pgx.ForEachRow(rows, []any{&id, &p.PausedAt, &p.ReopensAt, &p.By}, func() error {
			c := get(id)
			pause := console.Pause{PausedAt: p.PausedAt.UTC(), By: p.By}
			if p.ReopensAt != nil {
				at := p.ReopensAt.UTC()
				pause.ReopensAt = &at
			}
			c.Pause = &pause
			out.Campaigns[id] = c
			return nil
		}); err != nil {
			return fmt.Errorf("pauses: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT id, campaign, window_id, policy, dry_run, state, total, done, started_at, finished_at
			FROM allocation_runs ORDER BY id DESC LIMIT $1`, consoleRuns)
		runs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (console.Run, error) {
			var run console.Run
			err := r.Scan(&run.ID, &run.Campaign, &run.Window, &run.Policy, &run.DryRun, &run.State, &run.Total, &run.Done, &run.StartedAt, &run.FinishedAt)
			run.StartedAt = run.StartedAt.UTC()
			return run, err
		})
		if err != nil {
			return fmt.Errorf("allocation runs: %w", err)
		}
		out.Runs = runs
		return nil
	})
	if err != nil {
		return console.Counts{}, fmt.Errorf("console counts: %w", err)
	}
	return out, nil
}
