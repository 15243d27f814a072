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
	// Spec is the file this campaign was validated from, as stored.
	Spec File
	// HMACKey is the id of the HMAC key the campaign's identity, device
	// and address keys are made with. The store pins it when it first
	// keeps the campaign, so that a key rotation never changes them; ""
	// (a campaign no store has pinned) means the current key.
	HMACKey string
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
