package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
)

// Class is what a submission of the surge is, in truth: the scoring knows
// for each one what the system should make of it.
type Class string

// The classes of the surge, in the order docs/SIMULATION.md explains them.
const (
	// ClassFirst is a person's first submission, from their usual device.
	ClassFirst Class = "first"
	// ClassRepeat is a resubmission from a device the person already used,
	// with the same token (a new receipt).
	ClassRepeat Class = "repeat"
	// ClassRetry is a byte-identical retry of a first submission with the
	// same Idempotency-Key: it must get the same receipt, not a new one.
	ClassRetry Class = "retry"
	// ClassOtherDevice is the same person from another of their devices,
	// with a new token.
	ClassOtherDevice Class = "other_device"
	// ClassProxy is a relative or friend submitting for the person from
	// their own device, with the person's token (sometimes their own phone).
	ClassProxy Class = "proxy"
	// ClassBot is a bot submitting for dozens of people of one window: from
	// one device, over the campaign's device cap, or (every other bot) with
	// a new device id for each person and one phone, over the phone cap.
	ClassBot Class = "bot"
	// ClassMalformed is a request intake must answer 400: bad JSON, a bad
	// or missing field, a birth date outside the cohort.
	ClassMalformed Class = "malformed"
	// ClassOutOfWindow is a person whose birth-date digit is not open now:
	// intake must answer 403 window_closed.
	ClassOutOfWindow Class = "out_of_window"
	// ClassWindowJump is a person whose digit is not open claiming a birth
	// date whose digit is: accepted, then rejected (birthdate_mismatch)
	// because the token carries the true one.
	ClassWindowJump Class = "window_jump"
	// ClassForged is a well-formed intent with a token the provider did not
	// sign: accepted, then rejected (invalid_token).
	ClassForged Class = "forged_token"
)

// The fixed mix: each class's share of a surge's submissions. A surge of N
// submissions holds round(share·N) of each (largest remainders), so
// ShareFirst·N people are registered and a person submits 1/ShareFirst =
// 2.5 times on average. docs/SIMULATION.md gives the reasons for each.
const (
	ShareFirst       = 0.40
	ShareRepeat      = 0.17
	ShareRetry       = 0.05
	ShareOtherDevice = 0.12
	ShareProxy       = 0.08
	ShareBot         = 0.03
	ShareMalformed   = 0.04
	ShareOutOfWindow = 0.07
	ShareWindowJump  = 0.03
	ShareForged      = 0.01
)

// Mix is the fixed mix in a stable order.
var Mix = []struct {
	Class Class
	Share float64
}{
	{ClassFirst, ShareFirst},
	{ClassRepeat, ShareRepeat},
	{ClassRetry, ShareRetry},
	{ClassOtherDevice, ShareOtherDevice},
	{ClassProxy, ShareProxy},
	{ClassBot, ShareBot},
	{ClassMalformed, ShareMalformed},
	{ClassOutOfWindow, ShareOutOfWindow},
	{ClassWindowJump, ShareWindowJump},
	{ClassForged, ShareForged},
}

// Sizes and odds inside the mix.
const (
	BotMinPeople       = 20   // a bot submits for 20–60 people ("dozens")
	BotMaxPeople       = 60   //
	KeyedFirstShare    = 0.40 // firsts that carry an Idempotency-Key (besides the retried ones)
	KeyedRepeatShare   = 0.50 // repeats that carry a fresh Idempotency-Key
	ProxyOwnPhoneShare = 0.30 // proxies that give the helper's phone, not the person's
	ProxyFriendShare   = 0.20 // proxies by a friend rather than a relative
	ClinicChoiceShare  = 0.30 // intents naming a preferred clinic (when the campaign has clinics)
	EarliestShare      = 0.20 // intents giving an earliest date
	// BotPhoneOffset and OverflowPhoneOffset place the phones of the bots
	// that rotate device ids, and of family members a campaign's phone cap
	// leaves without the family phone, among Population.SparePhone's
	// numbers, apart from the forgers' (the first ones).
	BotPhoneOffset      = 1 << 24
	OverflowPhoneOffset = 1 << 25
	// DeviceBudget is the most requests that pass validation (answered 202
	// or 403) any device but a bot's sends in a surge: intake's default
	// per-device bucket (a burst of 5, "a person retrying") never refuses
	// a person, while a bot runs into it.
	DeviceBudget = 5
)

// MalformedVariants are the ways a malformed request is malformed, used in
// turn; each must be a 400 whatever else the request says.
var MalformedVariants = []string{
	"truncated_json", "not_a_date", "out_of_cohort", "bad_phone", "unknown_region",
	"missing_token", "unknown_field", "unknown_provider", "number_field",
}

// Want is what the system should answer to a submission and decide.
type Want struct {
	Status int // 202, 400 or 403
	// Window is, for a 202, the window the claimed birth date is in; for a
	// 403, the next window for the true one (what next_window names).
	Window string
	// Kind is the decision when it does not depend on arrival order:
	// rejected for window jumps and forged tokens. For the person classes
	// it is "" (registered for whichever arrives first, duplicate for the
	// rest; bots may also be held).
	Kind   prereg.Kind
	Reason prereg.Reason
}

// Submission is one request of the surge with its truth.
type Submission struct {
	Seq    int // position in the surge: the order to send in
	Class  Class
	Person int    // index into the population; -1 for forged tokens
	Bot    int    // the bot's number (1, 2, …) for ClassBot, else 0
	Device string // device_id of the body (empty only in malformed ones)
	// Addr is the client address a trusted proxy would forward
	// (X-Forwarded-For): the household's, or the bot's own.
	Addr           string
	Provider       string
	IdempotencyKey string // "" when the request carries none
	Body           []byte
	Want           Want
	// RetryOf is the Seq of the submission a ClassRetry repeats byte for
	// byte (same Idempotency-Key, so the same receipt); -1 otherwise.
	RetryOf int

	at float64 // place on the surge's timeline (0..~1): the sort key
}

// IntentPath is where intents are posted (docs/DESIGN.md, "HTTP").
const IntentPath = "/v1/intents"

// Headers returns the request's headers.
func (s *Submission) Headers() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	if s.IdempotencyKey != "" {
		h.Set("Idempotency-Key", s.IdempotencyKey)
	}
	if s.Addr != "" {
		h.Set("X-Forwarded-For", s.Addr)
	}
	return h
}

// NewRequest builds the HTTP request against an intake's base URL.
func (s *Submission) NewRequest(ctx context.Context, target string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(target, "/")+IntentPath, bytes.NewReader(s.Body))
	if err != nil {
		return nil, fmt.Errorf("sim: request: %w", err)
	}
	req.Header = s.Headers()
	return req, nil
}

// SurgeConfig configures NewSurge.
type SurgeConfig struct {
	Submissions int
	Seed        int64
	Campaign    *campaign.Campaign
	// Providers holds a simulated provider for each of the campaign's
	// providers, by name: tokens are issued with them.
	Providers map[string]*IdP
	// Now is the moment the surge is sent: it decides which digits are
	// open. Zero means time.Now().
	Now time.Time
}

// Surge is a deterministic surge of submissions with their truth.
type Surge struct {
	Campaign    *campaign.Campaign
	Population  *Population
	Now         time.Time
	Submissions []Submission
}

// Truth is what scoring needs of a surge.
func (s *Surge) Truth() Truth {
	return Truth{Submissions: s.Submissions, DeviceCap: s.Campaign.DeviceCap, PhoneCap: s.Campaign.PhoneCap()}
}

// Counts returns how many submissions of each class the surge holds.
func (s *Surge) Counts() map[Class]int {
	out := make(map[Class]int, len(Mix))
	for _, m := range Mix {
		out[m.Class] = 0
	}
	for i := range s.Submissions {
		out[s.Submissions[i].Class]++
	}
	return out
}

// MixCounts is the number of submissions of each class in a surge of n:
// round(share·n) by largest remainders, so that they sum to n.
func MixCounts(n int) map[Class]int {
	out := make(map[Class]int, len(Mix))
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(Mix))
	left := n
	for i, m := range Mix {
		x := m.Share * float64(n)
		out[m.Class] = int(math.Floor(x))
		left -= out[m.Class]
		rems[i] = rem{i, x - math.Floor(x)}
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for k := 0; k < left; k++ {
		out[Mix[rems[k%len(rems)].i].Class]++
	}
	return out
}

// PeopleFor is a population size large enough for a surge of n
// submissions against the campaign at now: enough people whose digit is
// open for the firsts, and whose digit is closed for the out-of-window
// classes. Most of the population then never submits, as in life.
func PeopleFor(n int, c *campaign.Campaign, now time.Time) int {
	open, closed := 0, 0
	for d := c.Cohort.BornFrom; !d.After(c.Cohort.BornTo); d = d.AddDate(0, 0, 1) {
		if _, ok := c.OpenWindow(d, now); ok {
			open++
		} else {
			closed++
		}
	}
	total := float64(open + closed)
	need := 1.0
	if open > 0 {
		need = max(need, ShareFirst*float64(n)/(float64(open)/total))
	}
	if closed > 0 {
		need = max(need, (ShareOutOfWindow+ShareWindowJump)*float64(n)/(float64(closed)/total))
	}
	return int(need*1.25) + 50
}

// NewSurge makes the surge of cfg.Submissions submissions from the
// population, with the fixed mix.
func NewSurge(pop *Population, cfg SurgeConfig) (*Surge, error) {
	c := cfg.Campaign
	if c == nil {
		return nil, fmt.Errorf("sim: surge: no campaign")
	}
	if cfg.Submissions < 1 {
		return nil, fmt.Errorf("sim: surge: want at least one submission, got %d", cfg.Submissions)
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Now()
	}
	var providers []string
	for _, p := range c.Providers {
		if cfg.Providers[p.Name] == nil {
			return nil, fmt.Errorf("sim: surge: no simulated provider for %q", p.Name)
		}
		providers = append(providers, p.Name)
	}
	g := &surgeBuilder{
		pop: pop, c: c, now: now, idps: cfg.Providers, providers: providers,
		rng:        newRand(cfg.Seed, "surge"),
		load:       map[string]map[int]bool{},
		cap:        c.DeviceCap,
		phoneCap:   c.PhoneCap(),
		proxyPhone: map[string]map[int]bool{},
	}
	g.subs = make([]Submission, 0, cfg.Submissions)
	if err := g.build(MixCounts(cfg.Submissions)); err != nil {
		return nil, err
	}
	return &Surge{Campaign: c, Population: pop, Now: now, Submissions: g.finish()}, nil
}

type surgeBuilder struct {
	pop       *Population
	c         *campaign.Campaign
	now       time.Time
	idps      map[string]*IdP
	providers []string
	rng       *rand.Rand
	cap       int
	phoneCap  int
	// proxyPhone holds, per phone, the people a proxy gave it for (the
	// helper's own phone): with the family members who share it, the
	// people who may register with it.
	proxyPhone map[string]map[int]bool

	subs    []Submission
	retryOf map[int]int // builder index of a retry → builder index of its original
	persons []int       // people with a first submission
	// By person (index into the population):
	start    []float64               // when they start
	provider []string                // their provider ("" until they take part)
	windowOf []string                // their open window
	sessions map[int][]int           // person → the submissions a repeat may resubmit
	first    map[int]int             // person → builder index of their first
	nonce    []int                   // person → tokens issued
	owner    map[string]int          // device → the person who owns it
	load     map[string]map[int]bool // device → the people it submitted for
	requests map[string]int          // device → requests that pass validation
	clinics  map[string]string       // region → nearest clinic
}

func (g *surgeBuilder) build(want map[Class]int) error {
	g.retryOf = map[int]int{}
	n := len(g.pop.People)
	g.start, g.provider, g.windowOf, g.nonce = make([]float64, n), make([]string, n), make([]string, n), make([]int, n)
	g.sessions = map[int][]int{}
	g.first = map[int]int{}
	g.clinics = nearestClinics(g.c.Clinics)
	g.requests = map[string]int{}
	g.owner = map[string]int{}
	for i := range g.pop.People {
		for _, d := range g.pop.People[i].Devices {
			g.owner[d] = i
		}
	}

	var open, closed []int
	for i := range g.pop.People {
		if w, ok := g.c.OpenWindow(g.pop.People[i].Birthdate, g.now); ok && g.c.Cohort.Contains(g.pop.People[i].Birthdate) {
			g.windowOf[i] = w.ID
			open = append(open, i)
		} else if g.c.Cohort.Contains(g.pop.People[i].Birthdate) {
			closed = append(closed, i)
		}
	}
	g.rng.Shuffle(len(open), func(a, b int) { open[a], open[b] = open[b], open[a] })
	g.rng.Shuffle(len(closed), func(a, b int) { closed[a], closed[b] = closed[b], closed[a] })

	nFirst := want[ClassFirst]
	if len(open) == 0 {
		return fmt.Errorf("sim: surge: campaign %s has no window open at %s", g.c.ID, g.now.Format(time.RFC3339))
	}
	if nFirst > len(open) {
		return fmt.Errorf("sim: surge: %d firsts need as many people whose digit is open, the population has %d (size it with sim.PeopleFor)", nFirst, len(open))
	}
	if want[ClassOutOfWindow]+want[ClassWindowJump] > 0 && len(closed) == 0 {
		return fmt.Errorf("sim: surge: the campaign has no closed birth-date digit at %s: out-of-window submissions need one", g.now.Format(time.RFC3339))
	}
	if nFirst == 0 {
		return fmt.Errorf("sim: surge: too few submissions for the mix (want at least 3)")
	}

	g.persons = open[:nFirst]
	for _, i := range g.persons {
		g.start[i] = frontLoaded(g.rng)
		g.provider[i] = g.providers[g.rng.IntN(len(g.providers))]
	}
	g.firsts(want[ClassRetry])
	g.retries(want[ClassRetry])
	g.otherDevices(want[ClassOtherDevice])
	g.proxies(want[ClassProxy])
	g.bots(want[ClassBot])
	g.repeats(want[ClassRepeat])
	g.malformed(want[ClassMalformed])
	jumpers := g.outOfWindow(want[ClassOutOfWindow], closed)
	g.windowJumps(want[ClassWindowJump], closed, jumpers)
	g.forged(want[ClassForged])
	// The mix is a contract: a class that could not be filled (too few
	// people with a second device, every helper's device at its budget) is
	// an error, never a quietly different surge.
	got := map[Class]int{}
	for i := range g.subs {
		got[g.subs[i].Class]++
	}
	for _, m := range Mix {
		if got[m.Class] != want[m.Class] {
			return fmt.Errorf("sim: surge: made %d %s submissions of %d: the population is too small or too odd for the mix (size it with sim.PeopleFor)", got[m.Class], m.Class, want[m.Class])
		}
	}
	return nil
}

// people returns the distinct people a device submits for, its owner
// included: the cap counts them per device.
func (g *surgeBuilder) people(device string) map[int]bool {
	m := g.load[device]
	if m == nil {
		m = map[int]bool{}
		if o, ok := g.owner[device]; ok {
			m[o] = true
		}
		g.load[device] = m
	}
	return m
}

func (g *surgeBuilder) addLoad(device string, person int) { g.people(device)[person] = true }

// fits reports whether a device can submit for the person without going
// over the cap, nor over its request budget: only bots go over them.
func (g *surgeBuilder) fits(device string, person int) bool {
	m := g.people(device)
	return (m[person] || len(m) < g.cap) && g.requests[device] < DeviceBudget
}

// spend takes one request of a device's budget, if any is left.
func (g *surgeBuilder) spend(device string) bool {
	if g.requests[device] >= DeviceBudget {
		return false
	}
	g.requests[device]++
	return true
}

// phoneOf is the phone a person writes: their own, unless it is the
// family phone and the campaign's phone cap is smaller than the family
// members who share it: those beyond the cap (in family order) give a
// phone of their own, so that only bots go over the phone cap.
func (g *surgeBuilder) phoneOf(person int) string {
	x := &g.pop.People[person]
	rank := 0
	for _, j := range g.pop.Families[x.Family] {
		if j < person && g.pop.People[j].Phone == x.Phone {
			rank++
		}
	}
	if rank < g.phoneCap {
		return x.Phone
	}
	return g.pop.SparePhone(OverflowPhoneOffset + person)
}

// phoneFits reports whether a proxy may give the helper's phone for the
// person without the phone going over the phone cap: the people who may
// register with it are the helper's family members who write it and the
// people proxies gave it for.
func (g *surgeBuilder) phoneFits(helper, person int) bool {
	phone := g.phoneOf(helper)
	people := map[int]bool{}
	for _, j := range g.pop.Families[g.pop.People[helper].Family] {
		if g.phoneOf(j) == phone {
			people[j] = true
		}
	}
	for j := range g.proxyPhone[phone] {
		people[j] = true
	}
	return people[person] || len(people) < g.phoneCap
}

// intent is the body of POST /v1/intents (docs/DESIGN.md, "HTTP"), as a
// citizen's app writes it: the citizens are outside prereg and do not
// import its stages (intake.Request); TestSurgeAgainstIntake holds the two
// to the same contract.
type intent struct {
	Campaign      string `json:"campaign"`
	Provider      string `json:"provider"`
	IdentityToken string `json:"identity_token"`
	Birthdate     string `json:"birthdate"`
	Phone         string `json:"phone"`
	Region        string `json:"region"`
	Clinic        string `json:"clinic,omitempty"`
	Earliest      string `json:"earliest,omitempty"`
	DeviceID      string `json:"device_id"`
}

// token issues a fresh token for the person on a device.
func (g *surgeBuilder) token(person int, device string) string {
	x := &g.pop.People[person]
	g.nonce[person]++
	return g.idps[g.provider[person]].Issue(TokenClaims{
		Person: x.ID, Birthdate: x.BirthdateString(), Phone: x.E164(), Device: device, Nonce: g.nonce[person],
	})
}

// intentFor fills an intent for the person; the clinic and earliest date
// are drawn once per person so that all their submissions agree.
func (g *surgeBuilder) intentFor(person int, device, token string) intent {
	x := &g.pop.People[person]
	in := intent{
		Campaign: g.c.ID, Provider: g.provider[person], IdentityToken: token,
		Birthdate: x.BirthdateString(), Phone: g.phoneOf(person), Region: x.Region, DeviceID: device,
	}
	r := newRand(g.pop.Seed^int64(person), "preferences")
	if clinic, ok := g.clinics[x.Region]; ok && r.Float64() < ClinicChoiceShare {
		in.Clinic = clinic
	}
	if r.Float64() < EarliestShare && g.c.Schedule.Days > 1 {
		in.Earliest = g.c.Schedule.Day(r.IntN(g.c.Schedule.Days)).Format(prereg.DateLayout)
	}
	return in
}

func (g *surgeBuilder) add(s Submission, in any) int {
	if s.Body == nil {
		b, err := json.Marshal(in)
		if err != nil {
			panic("sim: marshal intent: " + err.Error())
		}
		s.Body = b
	}
	s.RetryOf = -1
	g.subs = append(g.subs, s)
	return len(g.subs) - 1
}

func (g *surgeBuilder) accepted(person int) Want {
	return Want{Status: http.StatusAccepted, Window: g.windowOf[person]}
}

func (g *surgeBuilder) key() string {
	return fmt.Sprintf("%016x%016x", g.rng.Uint64(), g.rng.Uint64())
}

func (g *surgeBuilder) firsts(retries int) {
	// The retried firsts must carry a key; pick them now.
	keyed := map[int]bool{}
	for k := 0; k < retries && k < len(g.persons); k++ {
		keyed[g.persons[g.rng.IntN(len(g.persons))]] = true
	}
	for _, i := range g.persons {
		x := &g.pop.People[i]
		dev := x.Devices[0]
		g.spend(dev) // a fresh device: always within budget
		tok := g.token(i, dev)
		s := Submission{Class: ClassFirst, Person: i, Device: dev, Addr: x.Addr, Provider: g.provider[i], Want: g.accepted(i), at: g.start[i]}
		if keyed[i] || g.rng.Float64() < KeyedFirstShare {
			s.IdempotencyKey = g.key()
		}
		k := g.add(s, g.intentFor(i, dev, tok))
		g.first[i] = k
		g.sessions[i] = append(g.sessions[i], k)
	}
}

func (g *surgeBuilder) retries(n int) {
	var keyed []int
	for _, i := range g.persons {
		if g.subs[g.first[i]].IdempotencyKey != "" {
			keyed = append(keyed, g.first[i])
		}
	}
	for made, tries := 0, 0; made < n && len(keyed) > 0 && tries < 20*n+100; tries++ {
		orig := g.subs[keyed[g.rng.IntN(len(keyed))]]
		if !g.spend(orig.Device) {
			continue
		}
		made++
		s := orig
		s.Class = ClassRetry
		s.at = orig.at + g.rng.ExpFloat64()*0.002
		k := g.add(s, nil)
		g.retryOf[k] = g.first[orig.Person]
	}
}

func (g *surgeBuilder) otherDevices(n int) {
	var multi []int
	for _, i := range g.persons {
		if len(g.pop.People[i].Devices) > 1 {
			multi = append(multi, i)
		}
	}
	for made, tries := 0, 0; made < n && len(multi) > 0 && tries < 20*n+100; tries++ {
		i := multi[g.rng.IntN(len(multi))]
		x := &g.pop.People[i]
		dev := x.Devices[1+g.rng.IntN(len(x.Devices)-1)]
		if !g.spend(dev) {
			continue
		}
		made++
		tok := g.token(i, dev)
		s := Submission{Class: ClassOtherDevice, Person: i, Device: dev, Addr: x.Addr, Provider: g.provider[i], Want: g.accepted(i),
			at: g.start[i] + g.rng.ExpFloat64()*0.01}
		k := g.add(s, g.intentFor(i, dev, tok))
		g.sessions[i] = append(g.sessions[i], k)
	}
}

func (g *surgeBuilder) proxies(n int) {
	people := len(g.pop.People)
	for made, tries := 0, 0; made < n && tries < 20*n+100; tries++ {
		i := g.persons[g.rng.IntN(len(g.persons))]
		helper := -1
		var dev string
		rel := g.pop.Relatives(i)
		if len(rel) > 0 && g.rng.Float64() >= ProxyFriendShare {
			h := rel[g.rng.IntN(len(rel))]
			if d := g.pop.People[h].Devices[0]; g.fits(d, i) {
				helper, dev = h, d
			}
		} else if h := g.rng.IntN(people); h != i {
			if d := g.pop.People[h].Devices[0]; g.fits(d, i) {
				helper, dev = h, d
			}
		}
		if helper < 0 {
			continue
		}
		g.addLoad(dev, i)
		g.spend(dev)
		hx := &g.pop.People[helper]
		in := g.intentFor(i, dev, g.token(i, dev))
		if g.rng.Float64() < ProxyOwnPhoneShare && g.phoneFits(helper, i) {
			in.Phone = g.phoneOf(helper)
			if g.proxyPhone[in.Phone] == nil {
				g.proxyPhone[in.Phone] = map[int]bool{}
			}
			g.proxyPhone[in.Phone][i] = true
		}
		s := Submission{Class: ClassProxy, Person: i, Device: dev, Addr: hx.Addr, Provider: g.provider[i], Want: g.accepted(i),
			at: math.Abs(g.start[i] + (g.rng.Float64()-0.3)*0.05)}
		k := g.add(s, in)
		g.sessions[i] = append(g.sessions[i], k)
		made++
	}
}

// bots: each bot submits once for each of 20–60 people of one window (the
// bot's operator targets one day), in a burst. Odd bots send from one
// device (the device cap stops them); even bots make up a new device id
// for each person and give one phone of their own, where the SMS comes
// (the phone cap stops them).
func (g *surgeBuilder) bots(n int) {
	byWindow := map[string][]int{}
	for _, i := range g.persons {
		byWindow[g.windowOf[i]] = append(byWindow[g.windowOf[i]], i)
	}
	windows := make([]string, 0, len(byWindow))
	for w := range byWindow {
		windows = append(windows, w)
	}
	sort.Strings(windows)
	bot := 0
	for n > 0 {
		size := BotMinPeople + g.rng.IntN(BotMaxPeople-BotMinPeople+1)
		if n-size <= g.cap { // too few left for another bot over the cap
			size = n
		}
		size = min(size, n)
		w := windows[g.rng.IntN(len(windows))]
		victims := byWindow[w]
		if len(victims) == 0 {
			return
		}
		size = min(size, len(victims))
		// Take the victims from the end: each person has at most one bot.
		mine := victims[len(victims)-size:]
		byWindow[w] = victims[:len(victims)-size]
		bot++
		rotates := bot%2 == 0
		dev := g.pop.NewDeviceID()
		phone := g.pop.SparePhone(BotPhoneOffset + bot)
		addr := fmt.Sprintf("172.16.%d.%d", bot>>8&0xff, bot&0xff)
		t := frontLoaded(g.rng)
		for j, i := range mine {
			if rotates && j > 0 {
				dev = g.pop.NewDeviceID()
			}
			in := g.intentFor(i, dev, g.token(i, dev))
			if rotates {
				in.Phone = phone
			}
			g.addLoad(dev, i)
			g.add(Submission{Class: ClassBot, Person: i, Bot: bot, Device: dev, Addr: addr, Provider: g.provider[i], Want: g.accepted(i),
				at: t + float64(j)*1e-5}, in)
		}
		n -= size
	}
}

func (g *surgeBuilder) repeats(n int) {
	for made, tries := 0, 0; made < n && tries < 20*n+100; tries++ {
		i := g.persons[g.rng.IntN(len(g.persons))]
		ss := g.sessions[i]
		orig := g.subs[ss[g.rng.IntN(len(ss))]]
		if !g.spend(orig.Device) {
			continue
		}
		made++
		s := orig
		s.Class = ClassRepeat
		s.IdempotencyKey = ""
		if g.rng.Float64() < KeyedRepeatShare {
			s.IdempotencyKey = g.key()
		}
		s.at = orig.at + g.rng.ExpFloat64()*0.02
		g.add(s, nil)
	}
}

func (g *surgeBuilder) malformed(n int) {
	for k := range n {
		i := g.persons[g.rng.IntN(len(g.persons))]
		x := &g.pop.People[i]
		s := Submission{Class: ClassMalformed, Person: i, Device: x.Devices[0], Addr: x.Addr, Provider: g.provider[i],
			Want: Want{Status: http.StatusBadRequest}, at: math.Abs(g.start[i] - g.rng.Float64()*0.005)}
		in := g.intentFor(i, x.Devices[0], g.token(i, x.Devices[0]))
		s.Body = malformedBody(MalformedVariants[k%len(MalformedVariants)], in, g.c.Cohort)
		g.add(s, nil)
	}
}

// malformedBody turns a good intent into a bad request of the variant.
func malformedBody(variant string, in intent, cohort campaign.Cohort) []byte {
	m := map[string]any{
		"campaign": in.Campaign, "provider": in.Provider, "identity_token": in.IdentityToken,
		"birthdate": in.Birthdate, "phone": in.Phone, "region": in.Region, "device_id": in.DeviceID,
	}
	switch variant {
	case "truncated_json":
		b, _ := json.Marshal(m)
		return b[:len(b)/2]
	case "not_a_date":
		m["birthdate"] = in.Birthdate[:4] + "-02-30"
	case "out_of_cohort":
		m["birthdate"] = cohort.BornFrom.AddDate(-3, 0, 0).Format(prereg.DateLayout)
	case "bad_phone":
		m["phone"] = "010-12"
	case "unknown_region":
		m["region"] = "99999"
	case "missing_token":
		delete(m, "identity_token")
	case "unknown_field":
		m["referrer"] = "sms-link"
	case "unknown_provider":
		m["provider"] = "no-such-provider"
	case "number_field":
		m["region"] = 11680
	}
	b, _ := json.Marshal(m)
	return b
}

// outOfWindow: people whose digit is closed try 1–3 times with their true
// birth date. It returns who tried, in order, for the window jumps.
func (g *surgeBuilder) outOfWindow(n int, closed []int) []int {
	var tried []int
	for k := 0; n > 0 && k < 4*len(closed); k++ {
		i := closed[k%len(closed)]
		x := &g.pop.People[i]
		tries := min(n, 1+pickWeighted(g.rng, []float64{0.6, 0.3, 0.1}), DeviceBudget-g.requests[x.Devices[0]])
		if tries <= 0 {
			continue
		}
		g.requests[x.Devices[0]] += tries
		if g.provider[i] == "" {
			g.provider[i] = g.providers[g.rng.IntN(len(g.providers))]
			g.start[i] = frontLoaded(g.rng)
		}
		tok := g.token(i, x.Devices[0])
		next, _ := g.c.NextWindow(x.Birthdate, g.now)
		for t := range tries {
			g.add(Submission{Class: ClassOutOfWindow, Person: i, Device: x.Devices[0], Addr: x.Addr, Provider: g.provider[i],
				Want: Want{Status: http.StatusForbidden, Window: next.ID}, at: g.start[i] + float64(t)*0.001},
				g.intentFor(i, x.Devices[0], tok))
		}
		tried = append(tried, i)
		n -= tries
	}
	return tried
}

// windowJumps: people whose digit is closed (first those who got a 403)
// claim a birth date of the same month whose digit is open. Each attempt
// has a fresh token, which carries the true birth date.
func (g *surgeBuilder) windowJumps(n int, closed, tried []int) {
	order := append(slices.Clone(tried), closed...)
	for k := 0; n > 0 && k < 4*len(order); k++ {
		i := order[k%len(order)]
		x := &g.pop.People[i]
		claim, w, ok := g.jump(x.Birthdate)
		if !ok || !g.spend(x.Devices[0]) {
			continue
		}
		if g.provider[i] == "" {
			g.provider[i] = g.providers[g.rng.IntN(len(g.providers))]
			g.start[i] = frontLoaded(g.rng)
		}
		in := g.intentFor(i, x.Devices[0], g.token(i, x.Devices[0]))
		in.Birthdate = claim.Format(prereg.DateLayout)
		g.add(Submission{Class: ClassWindowJump, Person: i, Device: x.Devices[0], Addr: x.Addr, Provider: g.provider[i],
			Want: Want{Status: http.StatusAccepted, Window: w, Kind: prereg.KindRejected, Reason: prereg.ReasonBirthdateMismatch},
			at:   g.start[i] + 0.002 + g.rng.ExpFloat64()*0.01}, in)
		n--
	}
}

// jump finds the nearest date of the same month, inside the cohort, whose
// window is open now.
func (g *surgeBuilder) jump(birth time.Time) (time.Time, string, bool) {
	for d := 1; d <= 9; d++ {
		for _, sign := range []int{1, -1} {
			t := birth.AddDate(0, 0, sign*d)
			if t.Month() != birth.Month() || !g.c.Cohort.Contains(t) {
				continue
			}
			if w, ok := g.c.OpenWindow(t, g.now); ok {
				return t, w.ID, true
			}
		}
	}
	return time.Time{}, "", false
}

// forged: an attacker's device sends well-formed intents with tokens
// signed by the wrong key, a fresh phone and a birth date whose digit is
// open.
func (g *surgeBuilder) forged(n int) {
	var forger []*IdP
	for _, name := range g.providers {
		forger = append(forger, NewIdP(name, []byte("not the provider's secret"), DemoCISecret))
	}
	regions := newRegionPicker()
	for k := range n {
		victim := g.persons[g.rng.IntN(len(g.persons))]
		birth := g.pop.People[victim].Birthdate
		w, _ := g.c.OpenWindow(birth, g.now)
		p := g.rng.IntN(len(g.providers))
		dev := g.pop.NewDeviceID()
		phone := g.pop.SparePhone(k)
		tok := forger[p].Issue(TokenClaims{Person: fmt.Sprintf("forged-%d", k), Birthdate: birth.Format(prereg.DateLayout), Phone: e164(phone), Device: dev})
		in := intent{Campaign: g.c.ID, Provider: g.providers[p], IdentityToken: tok, Birthdate: birth.Format(prereg.DateLayout),
			Phone: phone, Region: regions.pick(g.rng), DeviceID: dev}
		g.add(Submission{Class: ClassForged, Person: -1, Device: dev, Addr: fmt.Sprintf("192.168.%d.%d", k>>8&0xff, k&0xff), Provider: g.providers[p],
			Want: Want{Status: http.StatusAccepted, Window: w.ID, Kind: prereg.KindRejected, Reason: prereg.ReasonInvalidToken},
			at:   g.rng.Float64()}, in)
	}
}

// finish sorts the submissions by their place on the timeline and numbers
// them.
func (g *surgeBuilder) finish() []Submission {
	idx := make([]int, len(g.subs))
	for k := range idx {
		idx[k] = k
	}
	sort.SliceStable(idx, func(a, b int) bool { return g.subs[idx[a]].at < g.subs[idx[b]].at })
	seq := make([]int, len(g.subs))
	out := make([]Submission, len(g.subs))
	for pos, k := range idx {
		seq[k] = pos
		out[pos] = g.subs[k]
		out[pos].Seq = pos
	}
	for k, orig := range g.retryOf {
		out[seq[k]].RetryOf = seq[orig]
	}
	return out
}

// frontLoaded draws a start on the surge's timeline (0..1) with the surge
// front-loaded: u = x² puts half of the people in the first quarter.
func frontLoaded(rng *rand.Rand) float64 {
	x := rng.Float64()
	return x * x
}

// nearestClinics maps each region to the clinic nearest its centre.
func nearestClinics(clinics []campaign.Clinic) map[string]string {
	out := map[string]string{}
	if len(clinics) == 0 {
		return out
	}
	for _, r := range region.All() {
		best, bestD := "", math.Inf(1)
		for _, c := range clinics {
			if d := region.DistanceKm(r.Lat, r.Lng, c.Lat, c.Lng); d < bestD {
				best, bestD = c.ID, d
			}
		}
		out[r.Code] = best
	}
	return out
}
