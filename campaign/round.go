package campaign

import "time"

// AllocationAllowance is the time a round's allocation run is given before
// its SMS are counted on: docs/BENCHMARKS.md measures 200,000
// registrations allocated in about 46 s, so a digit's round of 1.9 million
// takes some 8 minutes.
const AllocationAllowance = 30 * time.Minute

// ExpectedRound estimates how many people a window's round allocates: the
// cohort's head count (Dedupe.ExpectedPeople) times the window's share of
// the birth-date digits; a catch-up window takes a tenth, those who missed
// their own.
func (c *Campaign) ExpectedRound(w Window) int {
	digits := len(w.Digits)
	if w.CatchUp || digits == 0 {
		digits = 1
	}
	return c.Dedupe.ExpectedPeople * digits / 10
}

// SMSWindow is when the SMS of a window's round are expected: from the
// round's allocation (Window.AllocateAt) until the run's allowance plus
// the time the SMS account takes to send the expected round at
// Notify.Rate, rounded up to the next 10 minutes.
func (c *Campaign) SMSWindow(w Window) (from, until time.Time) {
	send := AllocationAllowance
	if c.Notify.Rate > 0 {
		send += time.Duration(float64(c.ExpectedRound(w)) / c.Notify.Rate * float64(time.Second))
	}
	until = w.AllocateAt.Add(send)
	if r := until.Truncate(10 * time.Minute); !r.Equal(until) {
		until = r.Add(10 * time.Minute)
	}
	return w.AllocateAt, until
}

// NextRound returns the window whose round a registration of window id
// takes part in at t: its own window's, until that round's allocation
// time, else the next round to be allocated (a registration left over
// rolls into it, docs/ALLOCATION.md). False when no round is left.
func (c *Campaign) NextRound(id string, t time.Time) (Window, bool) {
	if w, ok := c.Window(id); ok && w.AllocateAt.After(t) {
		return w, true
	}
	var best Window
	found := false
	for _, w := range c.Windows {
		if w.AllocateAt.After(t) && (!found || w.AllocateAt.Before(best.AllocateAt)) {
			best, found = w, true
		}
	}
	return best, found
}

// BandTimes returns when band b of a schedule day begins and ends, in loc.
func (s Schedule) BandTimes(day time.Time, b int, loc *time.Location) (start, end time.Time) {
	if b < 0 || b >= len(s.Bands) {
		return time.Time{}, time.Time{}
	}
	at := func(hhmm string) time.Time {
		h := int(hhmm[0]-'0')*10 + int(hhmm[1]-'0')
		m := int(hhmm[3]-'0')*10 + int(hhmm[4]-'0')
		return time.Date(day.Year(), day.Month(), day.Day(), h, m, 0, 0, loc)
	}
	return at(s.Bands[b].Start), at(s.Bands[b].End)
}
