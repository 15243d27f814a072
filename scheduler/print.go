package scheduler

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// PrintResult prints a result for a person: what was (or, dry, would
// be) assigned, who is left and why, the days, and the arrival deciles.
func PrintResult(w io.Writer, r Result) {
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
	for _, v := range []Via{ViaPreferred, ViaRegion, ViaNearby} {
		fmt.Fprintf(w, "    %-26s %10d\n", string(v), r.AssignedVia[v])
	}
	fmt.Fprintf(w, "  %-28s %10d  %s\n", "unassigned", r.Unassigned, percent(r.Unassigned, r.Registrations))
	reasons := make([]Reason, 0, len(r.UnassignedByReason))
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
