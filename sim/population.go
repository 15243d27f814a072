package sim

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
)

// Person is one synthetic citizen and the ground truth about them that the
// scoring needs: who they are to the identity provider, when they were
// born, where they live, which phone and devices they use and who their
// relatives are.
type Person struct {
	Index int
	// ID is the person's account at the identity provider: what a token
	// names. The provider reveals only a keyed hash of it (the CI).
	ID        string
	Birthdate time.Time // civil date at midnight UTC
	Region    string    // 5-digit code of region.All()
	// Phone is the mobile number the person writes into the form
	// (010-XXXX-XXXX). Members of a family sometimes share one.
	Phone   string
	Devices []string // 1–3 opaque device ids, the first the person's usual one
	Family  int      // index into Population.Families
	// Addr is the household's client address (what a trusted proxy would
	// put in X-Forwarded-For).
	Addr string
}

// Relatives returns the other members of the person's family.
func (p *Population) Relatives(i int) []int {
	fam := p.Families[p.People[i].Family]
	out := make([]int, 0, len(fam)-1)
	for _, j := range fam {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// BirthdateString is the birth date as the wire carries it.
func (x Person) BirthdateString() string { return x.Birthdate.Format(prereg.DateLayout) }

// E164 is the person's phone in the form identity providers give it.
func (x Person) E164() string { return e164(x.Phone) }

// Population is a deterministic synthetic population: the same seed, size
// and cohort give the same people, byte for byte.
type Population struct {
	Seed   int64
	Cohort campaign.Cohort
	People []Person
	// Families lists the members of each household (1–4 people, who submit
	// for each other).
	Families [][]int

	phoneA, phoneB uint64 // the phone permutation (see phoneNumber)
	ids            idSource
}

// Family size shares (households of 1, 2, 3 and 4 people of the cohort).
var familySizeWeights = []float64{0.30, 0.30, 0.25, 0.15}

// Device count shares (people with 1, 2 and 3 devices).
var deviceCountWeights = []float64{0.50, 0.35, 0.15}

// SharedPhoneShare is the share of family members (other than the first)
// who give the family's first member's phone instead of their own.
const SharedPhoneShare = 0.20

// NewPopulation makes n people born within the cohort, spread over the
// regions in proportion to their 2021 population. Birth dates are uniform
// over the cohort's days; when n ≥ 10 every birth-date digit is present, and
// when the cohort holds a 29 February at least one person (and about one in
// a thousand) is born on one.
func NewPopulation(seed int64, n int, cohort campaign.Cohort) (*Population, error) {
	if n < 1 {
		return nil, fmt.Errorf("sim: population: want at least one person, got %d", n)
	}
	if cohort.BornFrom.IsZero() || cohort.BornTo.Before(cohort.BornFrom) {
		return nil, fmt.Errorf("sim: population: empty cohort")
	}
	rng := newRand(seed, "population")
	p := &Population{Seed: seed, Cohort: cohort, People: make([]Person, 0, n)}
	p.ids = idSource{key: rng.Uint64()}
	// a odd and not a multiple of 5: x → a·x+b is a bijection modulo 10^8,
	// so every household gets its own number.
	p.phoneA = rng.Uint64()%phoneSpace | 1
	if p.phoneA%5 == 0 {
		p.phoneA += 2
	}
	p.phoneB = rng.Uint64() % phoneSpace

	days := int(cohort.BornTo.Sub(cohort.BornFrom).Hours()/24) + 1
	regionPick := newRegionPicker()
	var phones uint64
	for len(p.People) < n {
		size := min(pickWeighted(rng, familySizeWeights)+1, n-len(p.People))
		fam := len(p.Families)
		region := regionPick.pick(rng)
		addr := fmt.Sprintf("10.%d.%d.%d", fam>>16&0xff, fam>>8&0xff, fam&0xff)
		var members []int
		for k := range size {
			i := len(p.People)
			x := Person{
				Index:     i,
				ID:        fmt.Sprintf("u%016x", p.ids.next()),
				Birthdate: cohort.BornFrom.AddDate(0, 0, rng.IntN(days)),
				Region:    region,
				Family:    fam,
				Addr:      addr,
			}
			if k > 0 && rng.Float64() < SharedPhoneShare {
				x.Phone = p.People[members[0]].Phone
			} else {
				x.Phone = p.phoneNumber(phones)
				phones++
			}
			for range pickWeighted(rng, deviceCountWeights) + 1 {
				x.Devices = append(x.Devices, p.NewDeviceID())
			}
			p.People = append(p.People, x)
			members = append(members, i)
		}
		p.Families = append(p.Families, members)
	}
	p.pinBirthdates(rng)
	return p, nil
}

// NewDeviceID returns a device id no one in the population uses yet: the
// surge gives them to bots and forgers.
func (p *Population) NewDeviceID() string { return fmt.Sprintf("d%016x", p.ids.next()) }

// SparePhone returns the k-th phone number that no household of the
// population has (for forgers and the like).
func (p *Population) SparePhone(k int) string {
	return p.phoneNumber(uint64(len(p.Families)) + uint64(k))
}

// pinBirthdates makes sure the population exercises the edge cases a
// window rule must get right: every digit, and 29 February.
func (p *Population) pinBirthdates(rng *rand.Rand) {
	leaps := leapDays(p.Cohort)
	if len(leaps) > 0 {
		has := false
		for i := range p.People {
			if isLeapDay(p.People[i].Birthdate) {
				has = true
			}
		}
		// About one person in a thousand, and at least one.
		for i := range p.People {
			if (!has && i == len(p.People)/2) || i%1000 == 999 {
				p.People[i].Birthdate = leaps[rng.IntN(len(leaps))]
				has = true
			}
		}
	}
	if len(p.People) < 10 {
		return
	}
	seen := [10]bool{}
	for _, x := range p.People {
		seen[campaign.Digit(x.Birthdate)] = true
	}
	for d := range 10 {
		if seen[d] {
			continue
		}
		// Move one person to the same month's day with the missing digit
		// (days 10–19 exist in every month).
		i := (d*7919 + 1) % len(p.People)
		b := p.People[i].Birthdate
		p.People[i].Birthdate = time.Date(b.Year(), b.Month(), 10+d, 0, 0, 0, 0, time.UTC)
		if !p.Cohort.Contains(p.People[i].Birthdate) {
			p.People[i].Birthdate = b
		}
	}
}

func leapDays(c campaign.Cohort) []time.Time {
	var out []time.Time
	for y := c.BornFrom.Year(); y <= c.BornTo.Year(); y++ {
		d := time.Date(y, time.February, 29, 0, 0, 0, 0, time.UTC)
		if d.Month() == time.February && c.Contains(d) {
			out = append(out, d)
		}
	}
	return out
}

func isLeapDay(t time.Time) bool { return t.Month() == time.February && t.Day() == 29 }

const phoneSpace = 100_000_000

// phoneNumber is the k-th household phone: 010- and 8 digits, distinct for
// distinct k < 10^8.
func (p *Population) phoneNumber(k uint64) string {
	x := (p.phoneA*(k%phoneSpace) + p.phoneB) % phoneSpace
	return fmt.Sprintf("010-%04d-%04d", x/10000, x%10000)
}

// e164 turns 010-XXXX-XXXX into +8210XXXXXXXX.
func e164(phone string) string {
	b := []byte("+82")
	for i := 1; i < len(phone); i++ { // drop the leading 0
		if c := phone[i]; c >= '0' && c <= '9' {
			b = append(b, c)
		}
	}
	return string(b)
}

// regionPicker draws region codes in proportion to population.
type regionPicker struct {
	codes []string
	cum   []int
}

func newRegionPicker() regionPicker {
	var rp regionPicker
	total := 0
	for _, r := range region.All() {
		total += r.Population
		rp.codes = append(rp.codes, r.Code)
		rp.cum = append(rp.cum, total)
	}
	return rp
}

func (rp regionPicker) pick(rng *rand.Rand) string {
	x := rng.IntN(rp.cum[len(rp.cum)-1])
	return rp.codes[sort.SearchInts(rp.cum, x+1)]
}

// pickWeighted returns an index drawn with the given weights (summing to 1).
func pickWeighted(rng *rand.Rand, w []float64) int {
	x := rng.Float64()
	for i, wi := range w {
		if x < wi {
			return i
		}
		x -= wi
	}
	return len(w) - 1
}

// newRand is a deterministic generator for one purpose of one seed, so that
// adding draws to one part of the world does not shift the others.
func newRand(seed int64, purpose string) *rand.Rand {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(purpose); i++ {
		h ^= uint64(purpose[i])
		h *= 1099511628211
	}
	return rand.New(rand.NewPCG(uint64(seed), h))
}

// idSource hands out distinct 64-bit ids: splitmix64 is a bijection, so
// distinct counters give distinct ids.
type idSource struct {
	key, n uint64
}

func (s *idSource) next() uint64 {
	s.n++
	z := s.key + s.n*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
