package scheduler

import (
	"time"

	"github.com/prereg/prereg"
)

// Result is what a run did (or, dry, would do). It is the same for a dry
// run and the real run that follows it on the same data, and for a resumed
// run and an uninterrupted one (apart from RunID, DryRun, Resumed, Seed and
// Seconds).
type Result struct {
	RunID    int64  `json:"run_id"`
	Campaign string `json:"campaign"`
	Window   string `json:"window"`
	Policy   Policy `json:"policy"`
	DryRun   bool   `json:"dry_run"`
	Resumed  bool   `json:"resumed,omitempty"`
	// Bound is the highest registration id the run considered.
	Bound int64 `json:"bound"`

	// SeedHash is the published commitment; Seed the revealed seed (real
	// lottery runs only).
	SeedHash                 string     `json:"seed_hash,omitempty"`
	Seed                     string     `json:"seed,omitempty"`
	SeedCommittedAt          *time.Time `json:"seed_committed_at,omitempty"`
	SeedCommittedBeforeClose *bool      `json:"seed_committed_before_close,omitempty"`
	// InputHash is the hash of the frozen draw input the run drew over,
	// frozen at InputFrozenAt (the window's close, unless nothing froze it
	// then); absent for a run of a window not closed yet.
	InputHash     string     `json:"input_hash,omitempty"`
	InputFrozenAt *time.Time `json:"input_frozen_at,omitempty"`

	// Registrations is how many the run considered: the window's without an
	// appointment, plus CarriedOver left unassigned by earlier rounds.
	Registrations int         `json:"registrations"`
	CarriedOver   int         `json:"carried_over"`
	Assigned      int         `json:"assigned"`
	AssignedVia   map[Via]int `json:"assigned_via"`
	Unassigned    int         `json:"unassigned"`
	// UnassignedByReason and UnassignedByRegion (region code → reason →
	// count) say who is left and why.
	UnassignedByReason map[Reason]int            `json:"unassigned_by_reason"`
	UnassignedByRegion map[string]map[Reason]int `json:"unassigned_by_region"`
	// Days is the capacity used per schedule day.
	Days []DayUse `json:"days"`
	// ArrivalDeciles is the assignment rate by arrival-time decile (1: the
	// first tenth to submit): flat under the lottery, falling under fcfs
	// when capacity is short.
	ArrivalDeciles []Decile `json:"arrival_deciles"`
	Seconds        float64  `json:"seconds"`
}

// DayUse is one schedule day's capacity and use.
type DayUse struct {
	Day      string `json:"day"` // YYYY-MM-DD
	Capacity int    `json:"capacity"`
	// UsedBefore was taken before the run; Assigned by the run.
	UsedBefore int `json:"used_before"`
	Assigned   int `json:"assigned"`
}

// Decile is the assignment rate of one tenth of the registrations by
// arrival.
type Decile struct {
	Decile        int     `json:"decile"` // 1 to 10
	Registrations int     `json:"registrations"`
	Assigned      int     `json:"assigned"`
	Rate          float64 `json:"rate"`
}

// summarize computes a run's result from its plan.
func summarize(inv *Inventory, regs []Registration, order []int, plan []Outcome) Result {
	res := Result{
		Registrations:      len(regs),
		AssignedVia:        map[Via]int{},
		UnassignedByReason: map[Reason]int{},
		UnassignedByRegion: map[string]map[Reason]int{},
	}
	assigned := make([]bool, len(regs))
	perDay := make([]int, inv.Days)
	for k, o := range plan {
		r := &regs[order[k]]
		if r.CarriedOver {
			res.CarriedOver++
		}
		if o.Assigned() {
			res.Assigned++
			res.AssignedVia[o.Via()]++
			assigned[order[k]] = true
			_, day, _ := inv.slotOf(int(o.Slot))
			perDay[day]++
			continue
		}
		res.Unassigned++
		res.UnassignedByReason[o.Reason()]++
		if res.UnassignedByRegion[r.Region] == nil {
			res.UnassignedByRegion[r.Region] = map[Reason]int{}
		}
		res.UnassignedByRegion[r.Region][o.Reason()]++
	}
	for d := range inv.Days {
		du := DayUse{Day: inv.Start.AddDate(0, 0, d).Format(prereg.DateLayout), Assigned: perDay[d]}
		for c := range inv.Clinics {
			for b := range inv.Bands {
				s := inv.Slot(c, d, b)
				du.Capacity += int(inv.Capacity[s])
				du.UsedBefore += int(inv.Used[s])
			}
		}
		res.Days = append(res.Days, du)
	}
	if len(regs) > 0 {
		arrival := arrivalIndexes(regs)
		for d := range 10 {
			lo, hi := d*len(regs)/10, (d+1)*len(regs)/10
			dec := Decile{Decile: d + 1, Registrations: hi - lo}
			for _, i := range arrival[lo:hi] {
				if assigned[i] {
					dec.Assigned++
				}
			}
			if dec.Registrations > 0 {
				dec.Rate = float64(dec.Assigned) / float64(dec.Registrations)
			}
			res.ArrivalDeciles = append(res.ArrivalDeciles, dec)
		}
	}
	return res
}
