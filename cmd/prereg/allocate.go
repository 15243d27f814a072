package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

func init() {
	register(command{name: "allocate", summary: "batch allocation of a window's registrations (dry run first)", run: cmdAllocate})
}

func cmdAllocate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "allocate", "--campaign C --window W [--dry-run] [--policy lottery|fcfs] [--format text|json]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	window := fs.String("window", "", "window id (required)")
	dry := fs.Bool("dry-run", false, "plan and report, write nothing")
	policy := fs.String("policy", string(scheduler.PolicyLottery), "lottery (by the committed seed) or fcfs (by first submission)")
	format := fs.String("format", "text", "text or json")
	wait := fs.Bool("wait", false, "wait for another allocation of the campaign instead of failing")
	chunk := fs.Int("chunk", scheduler.DefaultChunkSize, "registrations written per transaction")
	maxKm := fs.Float64("max-distance-km", 0, "farthest region a registration may be sent to (0: any)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *campaignID == "" || *window == "" {
		return usagef("--campaign and --window are required")
	}
	pol, err := scheduler.ParsePolicy(*policy)
	if err != nil {
		return usagef("--policy: %v", err)
	}
	if *format != "text" && *format != "json" {
		return usagef("--format %q: want text or json", *format)
	}
	if *chunk < 1 || *maxKm < 0 {
		return usagef("want --chunk >= 1 and --max-distance-km >= 0")
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	a := scheduler.New(&postgres.AllocationStore{Pool: pool}, scheduler.Config{Logger: env.Logger, ChunkSize: *chunk, MaxDistanceKm: *maxKm})
	req := scheduler.Request{Campaign: *campaignID, Window: *window, DryRun: *dry, Policy: pol, Wait: *wait}
	var bar *progressbar.ProgressBar
	if out, ok := terminal(env.Stderr); ok && *format == "text" {
		desc := "allocating"
		if *dry {
			desc = "planning (dry run)"
		}
		req.Progress = func(done, total int) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(out), progressbar.OptionSetDescription(desc),
					progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish())
			}
			_ = bar.Set(done)
		}
	}
	var res scheduler.Result
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "allocation.start",
		fmt.Sprintf("campaign=%s window=%s dry_run=%t policy=%s", *campaignID, *window, *dry, pol), func() (err error) {
			res, err = a.Run(ctx, req)
			return err
		})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		var ie *scheduler.InterruptedError
		switch {
		case errors.Is(err, scheduler.ErrNoSeed):
			return fmt.Errorf("%w: commit one with 'prereg lottery commit --campaign %s --window %s' (before the window closes), or use --policy fcfs", err, *campaignID, *window)
		case errors.As(err, &ie):
			return fmt.Errorf("%w (prereg allocate --campaign %s --window %s --policy %s)", err, ie.Run.Campaign, ie.Run.Window, ie.Run.Policy)
		case ctx.Err() != nil && !*dry:
			return fmt.Errorf("%w; run the same command again to resume it", err)
		}
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printAllocation(env.Stdout, res)
	return nil
}

// terminal returns w as a file when it is a terminal: where a progress bar
// belongs.
func terminal(w io.Writer) (*os.File, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return nil, false
	}
	st, err := f.Stat()
	return f, err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printAllocation prints a result for a person: what was (or, dry, would
// be) assigned, who is left and why, the days, and the arrival deciles.
func printAllocation(w io.Writer, r scheduler.Result) {
	kind := "allocation"
	if r.DryRun {
		kind = "DRY RUN (nothing written)"
	}
	resumed := ""
	if r.Resumed {
		resumed = ", resumed"
	}
	fmt.Fprintf(w, "%s: run %d, campaign %s, window %s, policy %s%s, %.1f s\n", kind, r.RunID, r.Campaign, r.Window, r.Policy, resumed, r.Seconds)
	if r.SeedHash != "" {
		when := ""
		if r.SeedCommittedAt != nil {
			when = " committed " + r.SeedCommittedAt.UTC().Format(time.RFC3339)
			if r.SeedCommittedBeforeClose != nil && !*r.SeedCommittedBeforeClose {
				when += " (AFTER the window closed: the draw is not verifiably blind)"
			}
		}
		fmt.Fprintf(w, "  seed hash  %s%s\n", r.SeedHash, when)
		if r.Seed != "" {
			fmt.Fprintf(w, "  seed       %s (revealed; docs/ALLOCATION.md says how to rerun the draw)\n", r.Seed)
		}
	}
	fmt.Fprintf(w, "\n  %-28s %10d  (%d carried over from earlier rounds, ids up to %d)\n", "registrations", r.Registrations, r.CarriedOver, r.Bound)
	fmt.Fprintf(w, "  %-28s %10d  %s\n", "assigned", r.Assigned, percent(r.Assigned, r.Registrations))
	for _, v := range []scheduler.Via{scheduler.ViaPreferred, scheduler.ViaRegion, scheduler.ViaNearby} {
		fmt.Fprintf(w, "    %-26s %10d\n", string(v), r.AssignedVia[v])
	}
	fmt.Fprintf(w, "  %-28s %10d  %s\n", "unassigned", r.Unassigned, percent(r.Unassigned, r.Registrations))
	reasons := make([]scheduler.Reason, 0, len(r.UnassignedByReason))
	for k := range r.UnassignedByReason {
		reasons = append(reasons, k)
	}
	slices.Sort(reasons)
	for _, k := range reasons {
		fmt.Fprintf(w, "    %-26s %10d\n", string(k), r.UnassignedByReason[k])
	}
	if len(r.UnassignedByRegion) > 0 {
		type row struct {
			region string
			n      int
			detail string
		}
		var rows []row
		for region, byReason := range r.UnassignedByRegion {
			x := row{region: region}
			var parts []string
			for reason, n := range byReason {
				x.n += n
				parts = append(parts, fmt.Sprintf("%s %d", reason, n))
			}
			slices.Sort(parts)
			x.detail = strings.Join(parts, ", ")
			rows = append(rows, x)
		}
		slices.SortFunc(rows, func(a, b row) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.region, b.region)) })
		fmt.Fprintf(w, "\n  unassigned by region (%d regions; the 10 with most)\n", len(rows))
		for _, x := range rows[:min(10, len(rows))] {
			fmt.Fprintf(w, "    %-8s %8d  %s\n", x.region, x.n, x.detail)
		}
	}
	fmt.Fprintf(w, "\n  %-12s %10s %12s %10s %10s\n", "day", "capacity", "used before", "assigned", "use")
	for _, d := range r.Days {
		fmt.Fprintf(w, "  %-12s %10d %12d %10d %10s\n", d.Day, d.Capacity, d.UsedBefore, d.Assigned, percent(d.UsedBefore+d.Assigned, d.Capacity))
	}
	if len(r.ArrivalDeciles) > 0 {
		fmt.Fprintf(w, "\n  %-16s %13s %10s %8s\n", "arrival decile", "registrations", "assigned", "rate")
		for _, d := range r.ArrivalDeciles {
			fmt.Fprintf(w, "  %-16d %13d %10d %7.1f%%\n", d.Decile, d.Registrations, d.Assigned, 100*d.Rate)
		}
	}
}

func percent(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}
