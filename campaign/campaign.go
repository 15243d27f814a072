// Package campaign is the campaign model: who may register (the cohort), when
// (windows by the last digit of the day of birth, 10부제), through which
// identity providers, how the identity space is sharded, and which clinics
// offer how many slots. It loads and validates the YAML file documented in
// docs/CAMPAIGN.md and answers the window questions intake asks.
package campaign

import (
	"fmt"
	"time"

	"github.com/prereg/prereg"
)

// Defaults applied by Load when the file leaves a field out.
const (
	DefaultTimezone    = "Asia/Seoul"
	DefaultShards      = 16
	DefaultDeviceCap   = 4
	DefaultBloomFPRate = 0.001
	DefaultMaxShards   = 1024
	// DefaultMaxDistanceKm bounds the allocation's region fallback.
	DefaultMaxDistanceKm = 50
	// DefaultAllocateDelay is how long after a window closes its round is
	// allocated when the file does not say.
	DefaultAllocateDelay = time.Hour

	// DefaultPhoneCap lets a household share a phone: a parent registering
	// two children and themselves, with one to spare.
	DefaultPhoneCap = 4
)

// Campaign is a validated campaign. Times are absolute instants; dates are
// civil dates at midnight UTC (their Location is meaningless).
type Campaign struct {
	ID        string
	Name      string
	Location  *time.Location
	Cohort    Cohort
	Windows   []Window
	Providers []Provider
	Shards    int
	// DeviceCap is how many distinct people one device may register in one
	// window before its further submissions are held for review.
	DeviceCap int
	Dedupe    Dedupe
	Schedule  Schedule
	Clinics   []Clinic
	Notify    Notify
	// Allocation holds the rules of the allocation runs.
	Allocation Allocation
	// Spec is the file this campaign was validated from, as stored.
	Spec File
	// HMACKey is the id of the HMAC key the campaign's identity, device
	// and address keys are made with. The store pins it when it first
	// keeps the campaign, so that a key rotation never changes them; ""
	// (a campaign no store has pinned) means the current key.
	HMACKey string
	// Limits are the caps that hold on the identity side, whatever device
	// ids a client makes up.
	Limits Limits
}

// Limits are the campaign's identity-side caps (docs/SECURITY.md, "What
// each limit stops").
type Limits struct {
	// PhoneCap is how many distinct people may be registered with one
	// phone in the campaign, all windows together; a further person whose
	// submission gives that phone is held for review (phone_cap).
	PhoneCap int
}

// PhoneCap is the campaign's per-phone cap; a campaign built in memory
// without limits has the default.
func (c *Campaign) PhoneCap() int {
	if c.Limits.PhoneCap < 1 {
		return DefaultPhoneCap
	}
	return c.Limits.PhoneCap
}

// Cohort is the range of birth dates the campaign is for, inclusive.
type Cohort struct {
	BornFrom time.Time
	BornTo   time.Time
}

// Contains reports whether the birth date is inside the cohort.
func (c Cohort) Contains(birth time.Time) bool {
	return !birth.Before(c.BornFrom) && !birth.After(c.BornTo)
}

// Window is a period in which submissions for some birth-date digits are
// accepted. Digits are last digits of the day of birth (the 19th → 9); a
// catch-up window admits every digit.
type Window struct {
	ID      string
	Opens   time.Time // inclusive
	Closes  time.Time // exclusive
	Digits  []int
	CatchUp bool
	// AllocateAt is when the window's allocation round is planned, what
	// citizens are told: at or after Closes (by default Closes +
	// DefaultAllocateDelay).
	AllocateAt time.Time
}

// Admits reports whether the window admits a birth date's digit.
func (w Window) Admits(birth time.Time) bool {
	if w.CatchUp {
		return true
	}
	d := Digit(birth)
	for _, x := range w.Digits {
		if x == d {
			return true
		}
	}
	return false
}

// OpenAt reports whether the window is open at t: Opens ≤ t < Closes.
func (w Window) OpenAt(t time.Time) bool {
	return !t.Before(w.Opens) && t.Before(w.Closes)
}

// Digit is the 10부제 digit of a birth date: the last digit of its day.
func Digit(birth time.Time) int { return birth.Day() % 10 }

// Provider is an identity provider that verify calls behind its own breaker
// and worker pool.
type Provider struct {
	Name        string
	URL         string
	Timeout     time.Duration
	Concurrency int     // worker pool size (bulkhead)
	Rate        float64 // calls per second; 0 means unlimited
	Burst       int
	// LoginURL is the provider's sign-in page that the citizen page sends
	// the browser to (GET ?campaign=&device=&redirect_uri=&state=).
	LoginURL string
}

// Dedupe holds the sizing of the per-shard Bloom filters.
type Dedupe struct {
	BloomFPRate float64
	// ExpectedPeople sizes the filters: the cohort's head count at most.
	ExpectedPeople int
}

// Schedule is the period in which appointments are given and its time
// bands. Day i of the schedule is Start + i days.
type Schedule struct {
	Start time.Time
	Days  int
	Bands []Band
}

// Band is a time band of a day, e.g. 09:00–12:00.
type Band struct {
	Start string // HH:MM
	End   string
}

// Label is the band as people read it: "09:00-12:00".
func (b Band) Label() string { return b.Start + "-" + b.End }

// Clinic is a vaccination site with a capacity per band and day.
type Clinic struct {
	ID     string
	Name   string
	Region string
	Lat    float64
	Lng    float64
	// Capacity is the number of slots in each band of each day of the
	// schedule.
	Capacity int
	// Address is the street address citizens are shown.
	Address string
}

// Allocation holds the rules of the allocation runs.
type Allocation struct {
	// MaxDistanceKm bounds how far a registration's region fallback may
	// send it (great-circle km between the regions' clinic centroids);
	// 0 means any distance. DefaultMaxDistanceKm when the file is silent.
	MaxDistanceKm float64
}

// Notify configures the SMS: how fast the account may send and the link
// the text points to.
type Notify struct {
	Rate      float64 // messages per second
	StatusURL string  // base URL of the status page, e.g. https://prereg.example/
	Language  string  // ko or en
}

// Window returns the window with the given id.
func (c *Campaign) Window(id string) (Window, bool) {
	for _, w := range c.Windows {
		if w.ID == id {
			return w, true
		}
	}
	return Window{}, false
}

// Provider returns the provider with the given name.
func (c *Campaign) Provider(name string) (Provider, bool) {
	for _, p := range c.Providers {
		if p.Name == name {
			return p, true
		}
	}
	return Provider{}, false
}

// OpenWindow returns the window that admits the birth date at t, if any.
// Where windows overlap, the earliest-opened one wins, so the answer does not
// depend on the order of the file.
func (c *Campaign) OpenWindow(birth, t time.Time) (Window, bool) {
	var best Window
	found := false
	for _, w := range c.Windows {
		if w.OpenAt(t) && w.Admits(birth) && (!found || w.Opens.Before(best.Opens)) {
			best, found = w, true
		}
	}
	return best, found
}

// NextWindow returns the next window, opening after t, that admits the birth
// date: what a 403 window_closed answer points the citizen to.
func (c *Campaign) NextWindow(birth, t time.Time) (Window, bool) {
	var best Window
	found := false
	for _, w := range c.Windows {
		if w.Opens.After(t) && w.Admits(birth) && (!found || w.Opens.Before(best.Opens)) {
			best, found = w, true
		}
	}
	return best, found
}

// Day returns the date of schedule day i.
func (s Schedule) Day(i int) time.Time { return s.Start.AddDate(0, 0, i) }

// ParseDate parses a civil date in prereg.DateLayout.
func ParseDate(s string) (time.Time, error) {
	t, err := time.Parse(prereg.DateLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want a date as YYYY-MM-DD: %w", err)
	}
	return t, nil
}
