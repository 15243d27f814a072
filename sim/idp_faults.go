package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// Faults is what the simulated provider does wrong. The zero value is a
// healthy provider. Faults can be changed while the provider serves
// (IdP.SetFaults, or PUT /v1/faults), so a test can flip a provider from
// healthy to down and back.
type Faults struct {
	// Latency is the median delay before every answer. With LatencyP99
	// above it, delays follow a log-normal distribution with that median
	// and 99th percentile; otherwise every answer waits exactly Latency.
	Latency    Duration `json:"latency,omitempty"`
	LatencyP99 Duration `json:"latency_p99,omitempty"`
	// ErrorRate is the fraction of requests answered ErrorStatus (503 when
	// zero) without looking at the token.
	ErrorRate   float64 `json:"error_rate,omitempty"`
	ErrorStatus int     `json:"error_status,omitempty"`
	// TimeoutRate is the fraction of requests that are never answered: the
	// handler holds the request until the client gives up.
	TimeoutRate float64 `json:"timeout_rate,omitempty"`
	// Down answers every request 503 until changed: a full outage.
	Down bool `json:"down,omitempty"`
	// Outages are periods, measured from the moment these faults were set,
	// in which every request is answered 503: "down from 10s to 40s".
	Outages []Outage `json:"outages,omitempty"`
	// DripRate is the fraction of successful answers whose body trickles
	// out one byte every DripEvery (100ms when zero): a slow-drip body that
	// only a deadline on the whole exchange catches.
	DripRate  float64  `json:"drip_rate,omitempty"`
	DripEvery Duration `json:"drip_every,omitempty"`
}

// Outage is a period [From, To) after the faults were set.
type Outage struct {
	From Duration `json:"from"`
	To   Duration `json:"to"`
}

// ParseOutage parses "10s-40s" into an outage.
func ParseOutage(s string) (Outage, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return Outage{}, fmt.Errorf("outage %q: want FROM-TO such as 10s-40s", s)
	}
	from, err1 := time.ParseDuration(strings.TrimSpace(a))
	to, err2 := time.ParseDuration(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || to <= from || from < 0 {
		return Outage{}, fmt.Errorf("outage %q: want FROM-TO with 0 <= FROM < TO, such as 10s-40s", s)
	}
	return Outage{From: Duration(from), To: Duration(to)}, nil
}

// Outages is a list of outages given as a flag (flag.Value): repeated, or
// comma-separated, FROM-TO each.
type Outages []Outage

// String is the outages as Set reads them.
func (o *Outages) String() string {
	if o == nil {
		return ""
	}
	parts := make([]string, len(*o))
	for i, x := range *o {
		parts[i] = fmt.Sprintf("%s-%s", time.Duration(x.From), time.Duration(x.To))
	}
	return strings.Join(parts, ",")
}

// Set adds the comma-separated outages of s.
func (o *Outages) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		x, err := ParseOutage(part)
		if err != nil {
			return err
		}
		*o = append(*o, x)
	}
	return nil
}

// Validate reports faults that make no sense.
func (f Faults) Validate() error {
	for name, r := range map[string]float64{"error_rate": f.ErrorRate, "timeout_rate": f.TimeoutRate, "drip_rate": f.DripRate} {
		if r < 0 || r > 1 || math.IsNaN(r) {
			return fmt.Errorf("%s: want a fraction from 0 to 1, got %v", name, r)
		}
	}
	if f.Latency < 0 || f.LatencyP99 < 0 || f.DripEvery < 0 {
		return fmt.Errorf("durations must not be negative")
	}
	if f.ErrorStatus != 0 && (f.ErrorStatus < 400 || f.ErrorStatus > 599) {
		return fmt.Errorf("error_status: want 400 to 599, got %d", f.ErrorStatus)
	}
	for i, o := range f.Outages {
		if o.From < 0 || o.To <= o.From {
			return fmt.Errorf("outages[%d]: want 0 <= from < to", i)
		}
	}
	return nil
}

// Duration is a time.Duration written as "50ms" in JSON.
type Duration time.Duration

// MarshalText writes the duration as Go writes it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "50ms", "2s", ….
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as 50ms: %w", err)
	}
	*d = Duration(v)
	return nil
}

// faultState is a set of faults and the instant they were set, from which
// outage periods are measured.
type faultState struct {
	Faults
	since time.Time
}

// SetFaults replaces the provider's faults; outage periods start now.
func (p *IdP) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	p.faults.Store(&faultState{Faults: f, since: p.clock()})
	return nil
}

// Faults returns the provider's current faults.
func (p *IdP) Faults() Faults {
	if st := p.faults.Load(); st != nil {
		return st.Faults
	}
	return Faults{}
}

func (p *IdP) clock() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// delay draws one answer's delay.
func (f Faults) delay() time.Duration {
	med := time.Duration(f.Latency)
	if med <= 0 {
		return 0
	}
	p99 := time.Duration(f.LatencyP99)
	if p99 <= med {
		return med
	}
	// log-normal: median e^mu, 99th percentile e^(mu + 2.326 sigma).
	mu := math.Log(float64(med))
	sigma := (math.Log(float64(p99)) - mu) / 2.3263
	return time.Duration(math.Exp(mu + sigma*rand.NormFloat64()))
}

// inOutage reports whether t falls in a scheduled outage.
func (st *faultState) inOutage(t time.Time) bool {
	if st.Down {
		return true
	}
	el := Duration(t.Sub(st.since))
	for _, o := range st.Outages {
		if el >= o.From && el < o.To {
			return true
		}
	}
	return false
}

// injected is what the faults decided for one request.
type injected int

const (
	injectNone injected = iota
	injectOutage
	injectError
	injectTimeout
)

// apply waits out the drawn latency and decides which fault, if any, the
// request meets. It returns false when the client went away meanwhile.
func (p *IdP) apply(r *http.Request) (injected, bool) {
	st := p.faults.Load()
	if st == nil {
		return injectNone, true
	}
	if st.inOutage(p.clock()) {
		return injectOutage, true
	}
	if d := st.delay(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return injectNone, false
		}
	}
	switch x := rand.Float64(); {
	case x < st.TimeoutRate:
		return injectTimeout, true
	case x < st.TimeoutRate+st.ErrorRate:
		return injectError, true
	}
	return injectNone, true
}

// hang holds a request until its client gives up (or a long time passes,
// so that a test server can still shut down).
func hang(r *http.Request) {
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// drips reports whether this answer's body should trickle out.
func (p *IdP) drips() (time.Duration, bool) {
	st := p.faults.Load()
	if st == nil || st.DripRate <= 0 || rand.Float64() >= st.DripRate {
		return 0, false
	}
	if st.DripEvery <= 0 {
		return 100 * time.Millisecond, true
	}
	return time.Duration(st.DripEvery), true
}

// writeDrip writes v's JSON one byte at a time, every pause.
func writeDrip(w http.ResponseWriter, r *http.Request, status int, v any, pause time.Duration) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)+1))
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	t := time.NewTicker(pause)
	defer t.Stop()
	for _, b := range append(body, '\n') {
		if _, err := w.Write([]byte{b}); err != nil {
			return
		}
		_ = rc.Flush()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
}

// serveFaults reads (GET) or replaces (PUT) the faults.
func (p *IdP) serveFaults(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		var f Faults
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request", "detail": err.Error()})
			return
		}
		if err := p.SetFaults(f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request", "detail": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, p.Faults())
}
