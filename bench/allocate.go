package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/region"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

// AllocateResult is the result of `prereg bench allocate`.
type AllocateResult struct {
	Registrations   int     `json:"registrations"`
	Clinics         int     `json:"clinics"`
	Days            int     `json:"days"`
	AllocateSeconds float64 `json:"allocate_seconds"`
	CopySeconds     float64 `json:"copy_seconds"`
	TimeVsCopy      float64 `json:"time_vs_copy"`
	Assigned        int     `json:"assigned"`
	Unassigned      int     `json:"unassigned"`
	RowsWritten     int     `json:"rows_written"` // appointments + outbox rows, the COPY's size
	// DatabaseURL is the kept database (AllocateOptions.Keep).
	DatabaseURL string `json:"-"`
}

// AllocateOptions configure Allocate.
type AllocateOptions struct {
	Registrations int     // registrations of the window
	Clinics       int     // clinics of the generated inventory
	Days          int     // days of the schedule
	CapacityScale float64 // multiplies every clinic's capacity
	Chunk         int     // registrations written per transaction
	Seed          uint64  // seed of the inventory and the registrations
	Keep          bool    // keep the database for inspection
}

// FullAllocateSize is one day of 10부제: about a tenth of the 18–49
// cohort.
const FullAllocateSize = 1_900_000

// DefaultAllocateSize keeps the default run to a few minutes on two cores;
// the inventory is the full one either way.
const DefaultAllocateSize = 200_000

// Allocate loads a window's registrations and a clinic inventory into a
// scratch database, times one batch allocation, then a COPY of as many rows
// as the allocation wrote: the storage ceiling.
func Allocate(ctx context.Context, s Setup, o AllocateOptions) (*AllocateResult, error) {
	n, clinics, days, scale, chunk, seed := &o.Registrations, &o.Clinics, &o.Days, &o.CapacityScale, &o.Chunk, &o.Seed
	say := s.progress
	db, err := world.OpenScratch(ctx, s.DatabaseURL, "prereg_bench_alloc", s.logger())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.Keep = o.Keep
	pool := db.Pool

	say("loading %d clinics × %d days × 3 bands and %d registrations…", *clinics, *days, *n)
	inv := sim.Inventory(sim.InventoryConfig{Seed: *seed, Clinics: *clinics, CapacityScale: *scale})
	c, err := allocBenchCampaign(ctx, pool, inv, *days)
	if err != nil {
		return nil, err
	}
	if err := allocBenchRegistrations(ctx, pool, c, inv, *n, *seed); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		return nil, fmt.Errorf("vacuum: %w", err)
	}
	store := &postgres.AllocationStore{Pool: pool}
	a := scheduler.New(store, scheduler.Config{Logger: s.logger(), ChunkSize: *chunk})
	if _, err := a.CommitSeed(ctx, c.ID, "d9"); err != nil {
		return nil, err
	}

	say("allocating…")
	checkpoint(ctx, pool)
	start := time.Now()
	res, err := a.Run(ctx, scheduler.Request{Campaign: c.ID, Window: "d9"})
	if err != nil {
		return nil, err
	}
	out := &AllocateResult{Registrations: *n, Clinics: len(inv), Days: *days, AllocateSeconds: time.Since(start).Seconds(),
		Assigned: res.Assigned, Unassigned: res.Unassigned}

	say("COPY of the same rows…")
	out.CopySeconds, out.RowsWritten, err = allocBenchCopy(ctx, pool)
	if err != nil {
		return nil, err
	}
	out.TimeVsCopy = out.AllocateSeconds / out.CopySeconds

	if o.Keep {
		out.DatabaseURL = db.URL
		// Said whatever the output format: JSON on stdout stays clean.
		s.logger().Info("bench database kept", slog.String("url", config.RedactURL(db.URL)))
	}
	return out, nil
}

// PrintAllocate writes an allocate result for people.
func PrintAllocate(w io.Writer, o AllocateOptions, out *AllocateResult) {
	note := ""
	if o.Registrations != FullAllocateSize {
		note = fmt.Sprintf(" (one full day: --registrations %d)", FullAllocateSize)
	}
	fmt.Fprintf(w, "allocate bench: %d registrations over %d clinics × %d days × 3 bands%s\n\n", o.Registrations, out.Clinics, out.Days, note)
	fmt.Fprintf(w, "  %-26s %10.2f s  (assigned %d, unassigned %d)\n", "allocate (PG → PG)", out.AllocateSeconds, out.Assigned, out.Unassigned)
	fmt.Fprintf(w, "  %-26s %10.2f s  (%d appointment and outbox rows)\n", "COPY of the same rows", out.CopySeconds, out.RowsWritten)
	fmt.Fprintf(w, "  %-26s %10.2f    (target <= 1.5)\n", "allocate / COPY", out.TimeVsCopy)
}

// checkpoint flushes dirty pages so that a timed phase does not pay for the
// previous one's writes (best effort: it needs a privileged role).
func checkpoint(ctx context.Context, pool *pgxpool.Pool) {
	_, _ = pool.Exec(ctx, `CHECKPOINT`)
}

// allocBenchCampaign loads a one-window campaign with the inventory.
func allocBenchCampaign(ctx context.Context, pool *pgxpool.Pool, inv []campaign.Clinic, days int) (*campaign.Campaign, error) {
	f := campaign.File{
		ID:        "bench-allocate",
		Name:      "allocation bench",
		Cohort:    campaign.FileCohort{BornFrom: "1972-01-01", BornTo: "2003-12-31"},
		Windows:   []campaign.FileWindow{{ID: "d9", Opens: "2021-08-09T20:00:00+09:00", Closes: "2021-08-10T18:00:00+09:00", Digits: []int{9}}},
		Providers: []campaign.FileProvider{{Name: "pass", URL: "http://127.0.0.1:9101"}},
		Schedule:  campaign.FileSchedule{Start: "2021-08-26", Days: days},
	}
	for _, cl := range inv {
		f.Clinics = append(f.Clinics, campaign.FileClinic{ID: cl.ID, Name: cl.Name, Region: cl.Region, Lat: cl.Lat, Lng: cl.Lng, Capacity: cl.Capacity})
	}
	c, err := campaign.FromFile(f)
	if err != nil {
		return nil, fmt.Errorf("bench campaign: %w", err)
	}
	if _, err := (&postgres.CampaignStore{Pool: pool}).Load(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// allocBenchRegistrations copies n registrations of window d9: regions in
// proportion to population, a third naming a clinic of their region, a
// fifth an earliest date in the first week, 40 % arriving in the first 30
// minutes (as on 9 August 2021).
func allocBenchRegistrations(ctx context.Context, pool *pgxpool.Pool, c *campaign.Campaign, inv []campaign.Clinic, n int, seed uint64) error {
	r := mrand.New(mrand.NewPCG(seed, 0xa110c))
	regions := region.All()
	cum := make([]int, len(regions))
	total := 0
	for i, reg := range regions {
		total += reg.Population
		cum[i] = total
	}
	byRegion := map[string][]string{}
	for _, cl := range inv {
		byRegion[cl.Region] = append(byRegion[cl.Region], cl.ID)
	}
	w := c.Windows[0]
	span := w.Closes.Sub(w.Opens)
	birth := time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		x := r.IntN(total)
		lo, hi := 0, len(cum)-1
		for lo < hi {
			mid := (lo + hi) / 2
			if cum[mid] > x {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		region := regions[lo].Code
		var clinic, earliest any
		if list := byRegion[region]; len(list) > 0 && r.IntN(3) == 0 {
			clinic = list[r.IntN(len(list))]
		}
		if r.IntN(5) == 0 {
			earliest = c.Schedule.Day(r.IntN(7))
		}
		at := w.Opens.Add(time.Duration(r.Int64N(int64(30 * time.Minute))))
		if r.IntN(10) >= 4 {
			at = w.Opens.Add(time.Duration(r.Int64N(int64(span))))
		}
		return []any{c.ID, fmt.Sprintf("%064x", i), int32(i % c.Shards), "d9", birth, region, clinic, earliest,
			"k1", []byte("sealed-phone"), fmt.Sprintf("bench-receipt-%d", i), "bench-device", at}, nil
	})
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"registrations"},
		[]string{"campaign", "identity_key", "shard", "window_id", "birthdate", "region", "clinic", "earliest", "phone_kid", "phone_enc", "first_receipt", "device_key", "received_at"},
		src); err != nil {
		return fmt.Errorf("copy registrations: %w", err)
	}
	return nil
}

// allocBenchCopy is the reference: it reads back the appointment and
// outbox rows the allocation wrote, empties the two tables, and times a
// COPY of exactly those rows into them (one transaction, with the same
// indexes and constraints).
func allocBenchCopy(ctx context.Context, pool *pgxpool.Pool) (float64, int, error) {
	read := func(table string, cols []string) ([][]any, error) {
		q := "SELECT " + pgx.Identifier{cols[0]}.Sanitize()
		for _, c := range cols[1:] {
			q += ", " + pgx.Identifier{c}.Sanitize()
		}
		rows, err := pool.Query(ctx, q+" FROM "+table)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	}
	appts, err := read("appointments", postgres.AppointmentColumns)
	if err != nil {
		return 0, 0, fmt.Errorf("read appointments: %w", err)
	}
	outbox, err := read("outbox", postgres.OutboxColumns)
	if err != nil {
		return 0, 0, fmt.Errorf("read outbox: %w", err)
	}
	// CASCADE: later stages' tables referring to these are empty here.
	if _, err := pool.Exec(ctx, `TRUNCATE outbox, appointments CASCADE`); err != nil {
		return 0, 0, fmt.Errorf("empty tables: %w", err)
	}
	checkpoint(ctx, pool)
	start := time.Now()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"appointments"}, postgres.AppointmentColumns, pgx.CopyFromRows(appts)); err != nil {
			return fmt.Errorf("copy appointments: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"outbox"}, postgres.OutboxColumns, pgx.CopyFromRows(outbox)); err != nil {
			return fmt.Errorf("copy outbox: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return time.Since(start).Seconds(), len(appts) + len(outbox), nil
}
