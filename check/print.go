package check

import (
	"fmt"
	"io"
)

// PrintReport prints a report for a person: one line per invariant, with
// its examples and note.
func PrintReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "campaign %s: %d outcomes in the stream, %d in flight\n", rep.Campaign, rep.Outcomes, rep.InFlight)
	for _, inv := range rep.Invariants {
		mark := "ok  "
		if !inv.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s invariant %d: %s", mark, inv.ID, inv.Name)
		if !inv.OK {
			fmt.Fprintf(w, " (%d violations)", inv.Violations)
		}
		fmt.Fprintln(w)
		for _, e := range inv.Examples {
			fmt.Fprintf(w, "       %s\n", e)
		}
		if inv.Note != "" {
			fmt.Fprintf(w, "       note: %s\n", inv.Note)
		}
	}
}
