package scheduler

import (
	"math"
	"slices"
	"time"

	"github.com/prereg/prereg/region"
)

// Inventory is a campaign's slots as they were when a run started. Its
// JSON is what a round file publishes and what a round keeps of its run.
type Inventory struct {
	Start time.Time `json:"start"` // schedule day 0 (a civil date)
	Days  int       `json:"days"`
	Bands int       `json:"bands"`
	// Clinics are sorted by ID.
	Clinics []Clinic `json:"clinics"`
	// Capacity and Used are indexed by Slot: clinic index × Days × Bands +
	// day × Bands + band.
	Capacity []int32 `json:"capacity"`
	Used     []int32 `json:"used"`
}

// Clinic is a vaccination site as the allocator sees it.
type Clinic struct {
	ID     string  `json:"id"`
	Region string  `json:"region"`
	Lat    float64 `json:"lat"`
	Lng    float64 `json:"lng"`
}

// Slot returns the index of a clinic's band of a day in Capacity and Used.
func (inv *Inventory) Slot(clinic, day, band int) int {
	return (clinic*inv.Days+day)*inv.Bands + band
}

// Registration is a registration as the allocator sees it.
type Registration struct {
	ID     int64
	Region string
	Clinic string // preferred clinic, "" for none
	// Earliest is the earliest date it accepts, 0 for none.
	Earliest Date
	// Arrival is when its first submission arrived, in Unix nanoseconds:
	// the fcfs order. A run holds every registration it draws, so this
	// is one word rather than a time.Time of three.
	Arrival int64
	// CarriedOver is set when the registration belongs to another window
	// and was left unassigned by an earlier round.
	CarriedOver bool
	// WasUnassigned is set when an earlier round left it unassigned (its
	// reason is cleared when it gets a slot).
	WasUnassigned bool
	// Written is set when the run being resumed already wrote this
	// registration's outcome (its appointment, or its unassigned reason).
	Written bool
}

// Date is a civil date as a run holds it, once per registration: the
// seconds of its midnight UTC since the zero time.Time (0001-01-01 UTC), 8
// bytes where a time.Time takes 24. The zero Date is none, as the zero
// time.Time is.
type Date int64

// zeroUnix is the zero time.Time in Unix seconds.
const zeroUnix = -62135596800

// DateOf is the Date of t, a civil date at midnight UTC (the zero
// time.Time: none).
func DateOf(t time.Time) Date { return Date(t.Unix() - zeroUnix) }

// Time is the date at midnight UTC (the zero time.Time for none).
func (d Date) Time() time.Time { return time.Unix(int64(d)+zeroUnix, 0).UTC() }

// Via says how a registration got its slot.
type Via string

// The three steps of the preference order.
const (
	ViaPreferred Via = "preferred" // the preferred clinic
	ViaRegion    Via = "region"    // another clinic of the registration's region
	ViaNearby    Via = "nearby"    // a clinic of the nearest region with room
)

// Reason says why a registration was left unassigned.
type Reason string

// Reasons for leaving a registration unassigned; it rolls into the next
// round.
const (
	// ReasonNoCapacity: no slot was left on or after the earliest date
	// within reach.
	ReasonNoCapacity Reason = "no_capacity"
	// ReasonEarliestAfterSchedule: the earliest date is after the
	// schedule's last day.
	ReasonEarliestAfterSchedule Reason = "earliest_after_schedule"
	// ReasonRegionUnknown: the region has no clinic, nor has its province,
	// so "nearest" means nothing.
	ReasonRegionUnknown Reason = "region_unknown"
)

// Outcome is the plan for one registration. A run keeps one per
// registration while it writes them, so it is kept small: the step or
// the reason is a code (Via, Reason read it).
type Outcome struct {
	Registration int64
	// Slot is the index into the inventory, -1 when unassigned.
	Slot int32
	how  uint8 // an index of vias when assigned, of reasons when not
}

// The steps and reasons an Outcome's code stands for; 0 is none.
var (
	vias    = [...]Via{"", ViaPreferred, ViaRegion, ViaNearby}
	reasons = [...]Reason{"", ReasonNoCapacity, ReasonEarliestAfterSchedule, ReasonRegionUnknown}
)

// The codes of vias and reasons.
const (
	viaPreferred uint8 = 1 + iota
	viaRegion
	viaNearby
)

const (
	noCapacity uint8 = 1 + iota
	earliestAfterSchedule
	regionUnknown
)

// Assigned reports whether the outcome is an appointment.
func (o Outcome) Assigned() bool { return o.Slot >= 0 }

// Via says how an assigned registration got its slot ("" when unassigned).
func (o Outcome) Via() Via {
	if !o.Assigned() {
		return ""
	}
	return vias[o.how]
}

// Reason says why a registration was left unassigned ("" when assigned).
func (o Outcome) Reason() Reason {
	if o.Assigned() {
		return ""
	}
	return reasons[o.how]
}

// planner assigns slots greedily in the order it is handed registrations.
// Capacity only ever decreases during a plan, so "the first slot with room
// at or after s" is a disjoint-set forest over slot indexes with path
// compression: amortised almost constant per lookup, at every level
// (clinic, region, campaign).
type planner struct {
	inv     *Inventory
	perDay  int // slots per clinic: Days × Bands
	rem     []int32
	clinics map[string]int
	clinic  []nextFree // per clinic, over its slots

	regions         map[string]int // code → index in region
	region          []regionRoom
	global          nextFree
	globalN         []int32
	maxKm           float64
	centres         map[string]centre // region code → where "nearest" is measured from
	nearest         map[string][]int  // region code → region indexes by distance
	provinceCentres map[string]centre
}

type centre struct {
	lat, lng float64
	ok       bool
}

// regionRoom is the room of one region: per slot index (day × Bands +
// band) the free places over its clinics, and a cursor to the first of its
// clinics (in ID order) that may still have room at that index.
type regionRoom struct {
	code    string
	clinics []int
	free    []int32
	next    nextFree
	cursor  []int32
	centre  centre
}

// nextFree finds the first index at or after i whose room is not exhausted
// (n when none).
type nextFree []int32

func newNextFree(n int, hasRoom func(int) bool) nextFree {
	p := make(nextFree, n+1)
	for i := range n {
		if hasRoom(i) {
			p[i] = int32(i)
		} else {
			p[i] = int32(i + 1)
		}
	}
	p[n] = int32(n)
	return p
}

func (p nextFree) find(i int) int {
	root := i
	for int(p[root]) != root {
		root = int(p[root])
	}
	for int(p[i]) != root {
		p[i], i = int32(root), int(p[i])
	}
	return root
}

func (p nextFree) full(i int) { p[i] = int32(i + 1) }

func newPlanner(inv *Inventory, maxKm float64) *planner {
	s := inv.Days * inv.Bands
	pl := &planner{
		inv:     inv,
		perDay:  s,
		rem:     make([]int32, len(inv.Capacity)),
		clinics: make(map[string]int, len(inv.Clinics)),
		clinic:  make([]nextFree, len(inv.Clinics)),
		regions: map[string]int{},
		globalN: make([]int32, s),
		maxKm:   maxKm,
		centres: map[string]centre{},
		nearest: map[string][]int{},
	}
	for i := range pl.rem {
		pl.rem[i] = max(0, inv.Capacity[i]-inv.Used[i])
	}
	type sum struct {
		lat, lng float64
		n        int
	}
	provinces := map[string]*sum{}
	for c, cl := range inv.Clinics {
		pl.clinics[cl.ID] = c
		base := c * s
		pl.clinic[c] = newNextFree(s, func(i int) bool { return pl.rem[base+i] > 0 })
		r, ok := pl.regions[cl.Region]
		if !ok {
			r = len(pl.region)
			pl.regions[cl.Region] = r
			pl.region = append(pl.region, regionRoom{code: cl.Region, free: make([]int32, s), cursor: make([]int32, s)})
		}
		rr := &pl.region[r]
		rr.clinics = append(rr.clinics, c)
		rr.centre.lat += cl.Lat
		rr.centre.lng += cl.Lng
		for i := range s {
			rr.free[i] += pl.rem[base+i]
			pl.globalN[i] += pl.rem[base+i]
		}
		p := provinceOf(cl.Region)
		if provinces[p] == nil {
			provinces[p] = &sum{}
		}
		provinces[p].lat += cl.Lat
		provinces[p].lng += cl.Lng
		provinces[p].n++
	}
	for r := range pl.region {
		rr := &pl.region[r]
		n := float64(len(rr.clinics))
		rr.centre = centre{lat: rr.centre.lat / n, lng: rr.centre.lng / n, ok: true}
		rr.next = newNextFree(s, func(i int) bool { return rr.free[i] > 0 })
		pl.centres[rr.code] = rr.centre
	}
	pl.provinceCentres = map[string]centre{}
	for p, v := range provinces {
		pl.provinceCentres[p] = centre{lat: v.lat / float64(v.n), lng: v.lng / float64(v.n), ok: true}
	}
	pl.global = newNextFree(s, func(i int) bool { return pl.globalN[i] > 0 })
	return pl
}

// provinceOf is the si/do part of a region code: its first two digits.
func provinceOf(region string) string {
	if len(region) < 2 {
		return region
	}
	return region[:2]
}

// neighbours returns the regions (indexes) by distance from a region's
// centre, within maxKm when set; a region without clinics is placed at the
// centroid of its province's clinics. nil when it cannot be placed.
func (pl *planner) neighbours(code string) ([]int, bool) {
	if n, ok := pl.nearest[code]; ok {
		return n, n != nil
	}
	c, ok := pl.centres[code]
	if !ok {
		c = pl.provinceCentres[provinceOf(code)]
	}
	if !c.ok {
		pl.nearest[code] = nil
		return nil, false
	}
	type byDist struct {
		r int
		d float64
	}
	var list []byDist
	for r := range pl.region {
		if pl.region[r].code == code {
			continue
		}
		d := region.DistanceKm(c.lat, c.lng, pl.region[r].centre.lat, pl.region[r].centre.lng)
		if pl.maxKm > 0 && d > pl.maxKm {
			continue
		}
		list = append(list, byDist{r, d})
	}
	slices.SortStableFunc(list, func(a, b byDist) int {
		if a.d != b.d {
			if a.d < b.d {
				return -1
			}
			return 1
		}
		return 0
	})
	out := make([]int, len(list))
	for i, x := range list {
		out[i] = x.r
	}
	pl.nearest[code] = out
	return out, true
}

// earliestIndex is the first slot index (day × Bands) a registration may
// take; perDay or more when its earliest date is after the schedule.
func (pl *planner) earliestIndex(r *Registration) int {
	if r.Earliest == 0 {
		return 0
	}
	days := int(math.Floor(r.Earliest.Time().Sub(pl.inv.Start).Hours() / 24))
	if days <= 0 {
		return 0
	}
	if days >= pl.inv.Days {
		return pl.perDay
	}
	return days * pl.inv.Bands
}

// take books slot index i of clinic c.
func (pl *planner) take(c, i int) int {
	slot := c*pl.perDay + i
	pl.rem[slot]--
	if pl.rem[slot] == 0 {
		pl.clinic[c].full(i)
	}
	rr := &pl.region[pl.regions[pl.inv.Clinics[c].Region]]
	rr.free[i]--
	if rr.free[i] == 0 {
		rr.next.full(i)
	}
	pl.globalN[i]--
	if pl.globalN[i] == 0 {
		pl.global.full(i)
	}
	return slot
}

// inRegion books the first slot at or after from in region r.
func (pl *planner) inRegion(r, from int) (int, bool) {
	rr := &pl.region[r]
	i := rr.next.find(from)
	if i >= pl.perDay {
		return 0, false
	}
	for pl.rem[rr.clinics[rr.cursor[i]]*pl.perDay+i] == 0 {
		rr.cursor[i]++
	}
	return pl.take(rr.clinics[rr.cursor[i]], i), true
}

// assign plans one registration.
func (pl *planner) assign(r *Registration) Outcome {
	out := Outcome{Registration: r.ID, Slot: -1}
	assigned := func(slot int, via uint8) Outcome {
		out.Slot, out.how = int32(slot), via
		return out
	}
	from := pl.earliestIndex(r)
	if from >= pl.perDay {
		out.how = earliestAfterSchedule
		return out
	}
	if c, ok := pl.clinics[r.Clinic]; ok && r.Clinic != "" {
		if i := pl.clinic[c].find(from); i < pl.perDay {
			return assigned(pl.take(c, i), viaPreferred)
		}
	}
	if pl.global.find(from) >= pl.perDay {
		out.how = noCapacity
		return out
	}
	if reg, ok := pl.regions[r.Region]; ok {
		if slot, ok := pl.inRegion(reg, from); ok {
			return assigned(slot, viaRegion)
		}
	}
	near, ok := pl.neighbours(r.Region)
	if !ok {
		out.how = regionUnknown
		return out
	}
	for _, reg := range near {
		if slot, ok := pl.inRegion(reg, from); ok {
			return assigned(slot, viaNearby)
		}
	}
	out.how = noCapacity
	return out
}

// Plan assigns regs in the given order (indexes into regs) against inv and
// returns one outcome per registration, in that order. It is a pure
// function of its arguments: the same snapshot and order give the same plan.
func Plan(inv *Inventory, regs []Registration, order []int, maxKm float64, progress func(done int)) []Outcome {
	pl := newPlanner(inv, maxKm)
	out := make([]Outcome, len(order))
	for n, i := range order {
		out[n] = pl.assign(&regs[i])
		if progress != nil && (n+1)%65536 == 0 {
			progress(n + 1)
		}
	}
	return out
}
