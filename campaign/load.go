package campaign

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// File is the campaign file as written (docs/CAMPAIGN.md). It is also the
// form in which a campaign is stored in PostgreSQL (as JSON), so that what
// was loaded can be shown again exactly; clinics are stored in their own
// table instead.
type File struct {
	ID        string         `yaml:"id" json:"id"`
	Name      string         `yaml:"name" json:"name"`
	Timezone  string         `yaml:"timezone" json:"timezone"`
	Cohort    FileCohort     `yaml:"cohort" json:"cohort"`
	Windows   []FileWindow   `yaml:"windows" json:"windows"`
	Providers []FileProvider `yaml:"providers" json:"providers"`
	Shards    int            `yaml:"shards" json:"shards"`
	DeviceCap int            `yaml:"device_cap" json:"device_cap"`
	Dedupe    FileDedupe     `yaml:"dedupe" json:"dedupe"`
	Schedule  FileSchedule   `yaml:"schedule" json:"schedule"`
	Notify    FileNotify     `yaml:"notify" json:"notify"`
	// Allocation is optional; nil means every default.
	Allocation *FileAllocation `yaml:"allocation,omitempty" json:"allocation,omitempty"`
	// Limits is optional; nil means every default.
	Limits      *FileLimits  `yaml:"limits,omitempty" json:"limits,omitempty"`
	Clinics     []FileClinic `yaml:"clinics" json:"-"`
	ClinicsFile string       `yaml:"clinics_file" json:"-"`
}

// FileCohort is the cohort section of the file.
type FileCohort struct {
	BornFrom string `yaml:"born_from" json:"born_from"`
	BornTo   string `yaml:"born_to" json:"born_to"`
}

// FileWindow is one window of the file. Times are RFC 3339, or
// "YYYY-MM-DD HH:MM" in the campaign's time zone.
type FileWindow struct {
	ID      string `yaml:"id" json:"id"`
	Opens   string `yaml:"opens" json:"opens"`
	Closes  string `yaml:"closes" json:"closes"`
	Digits  []int  `yaml:"digits" json:"digits"`
	CatchUp bool   `yaml:"catch_up" json:"catch_up"`
	// AllocateAt is optional: the close + DefaultAllocateDelay when "".
	AllocateAt string `yaml:"allocate_at,omitempty" json:"allocate_at,omitempty"`
}

// FileProvider is one identity provider of the file.
type FileProvider struct {
	Name        string  `yaml:"name" json:"name"`
	URL         string  `yaml:"url" json:"url"`
	Timeout     string  `yaml:"timeout" json:"timeout"`
	Concurrency int     `yaml:"concurrency" json:"concurrency"`
	Rate        float64 `yaml:"rate" json:"rate"`
	Burst       int     `yaml:"burst" json:"burst"`
	// LoginURL is the provider's sign-in page, as the citizen's browser
	// reaches it; {url}/login when empty.
	LoginURL string `yaml:"login_url" json:"login_url,omitempty"`
}

// FileDedupe is the dedupe section of the file.
type FileDedupe struct {
	BloomFPRate    float64 `yaml:"bloom_fp_rate" json:"bloom_fp_rate"`
	ExpectedPeople int     `yaml:"expected_people" json:"expected_people"`
}

// FileSchedule is the schedule section of the file.
type FileSchedule struct {
	Start string   `yaml:"start" json:"start"`
	Days  int      `yaml:"days" json:"days"`
	Bands []string `yaml:"bands" json:"bands"` // "09:00-12:00"
}

// FileNotify is the notify section of the file.
type FileNotify struct {
	Rate      float64 `yaml:"rate" json:"rate"`
	StatusURL string  `yaml:"status_url" json:"status_url"`
	Language  string  `yaml:"language" json:"language"`
}

// FileAllocation is the allocation section of the file.
type FileAllocation struct {
	// MaxDistanceKm: nil is DefaultMaxDistanceKm, 0 any distance.
	MaxDistanceKm *float64 `yaml:"max_distance_km,omitempty" json:"max_distance_km,omitempty"`
}

// FileLimits is the limits section of the file.
type FileLimits struct {
	PhoneCap int `yaml:"phone_cap" json:"phone_cap,omitempty"`
}

// FileClinic is one clinic of the file (or one row of clinics_file).
type FileClinic struct {
	ID       string  `yaml:"id"`
	Name     string  `yaml:"name"`
	Region   string  `yaml:"region"`
	Lat      float64 `yaml:"lat"`
	Lng      float64 `yaml:"lng"`
	Capacity int     `yaml:"capacity"`
	Address  string  `yaml:"address,omitempty"`
}

// FieldError is a validation error that names where in the file it is.
type FieldError struct {
	Line  int    // 0 when unknown
	Field string // e.g. windows[2].digits
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// ValidationError lists every problem found in a campaign file.
type ValidationError struct {
	File   string
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	name := e.File
	if name == "" {
		name = "campaign"
	}
	fmt.Fprintf(&b, "%s: %d problem(s)", name, len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// LoadFile reads and validates a campaign file; a clinics_file is read
// relative to the file's folder.
func LoadFile(path string) (*Campaign, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read campaign: %w", err)
	}
	c, err := Parse(data, filepath.Dir(path))
	var ve *ValidationError
	if errors.As(err, &ve) {
		ve.File = path
	}
	return c, err
}

// Parse decodes and validates campaign YAML. dir is where a clinics_file is
// looked for ("" for none).
func Parse(data []byte, dir string) (*Campaign, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ValidationError{Errors: []*FieldError{{Field: "(file)", Msg: err.Error()}}}
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ValidationError{Errors: []*FieldError{{Field: "(file)", Msg: "empty file"}}}
		}
		return nil, &ValidationError{Errors: yamlErrors(err)}
	}
	if f.ClinicsFile != "" {
		if dir == "" {
			dir = "."
		}
		cl, err := readClinicsCSV(filepath.Join(dir, f.ClinicsFile))
		if err != nil {
			return nil, &ValidationError{Errors: []*FieldError{{Line: lineOf(&root, "clinics_file"), Field: "clinics_file", Msg: err.Error()}}}
		}
		f.Clinics = append(f.Clinics, cl...)
	}
	return f.validate(&root)
}

// FromFile validates an already decoded File, e.g. one stored as JSON.
func FromFile(f File) (*Campaign, error) { return f.validate(nil) }

// MarshalSpec is the JSON form stored beside a loaded campaign.
func (f File) MarshalSpec() ([]byte, error) { return json.Marshal(f) }

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

func yamlErrors(err error) []*FieldError {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var out []*FieldError
		for _, m := range te.Errors {
			fe := &FieldError{Field: "(file)", Msg: m}
			if g := yamlLine.FindStringSubmatch(m); g != nil {
				fe.Line, _ = strconv.Atoi(g[1])
				fe.Msg = g[2]
			}
			out = append(out, fe)
		}
		return out
	}
	fe := &FieldError{Field: "(file)", Msg: err.Error()}
	if g := yamlLine.FindStringSubmatch(err.Error()); g != nil {
		fe.Line, _ = strconv.Atoi(g[1])
		fe.Msg = g[2]
	}
	return []*FieldError{fe}
}

var (
	idPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	bandPattern = regexp.MustCompile(`^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$`)
)

// validate turns a File into a Campaign, collecting every problem, in
// the order of the file's sections. root, when set, gives the line of
// each field.
func (f File) validate(root *yaml.Node) (*Campaign, error) {
	p := &problems{root: root}
	c := &Campaign{ID: f.ID, Name: cmp.Or(f.Name, f.ID), Spec: f}
	c.Spec.Clinics, c.Spec.ClinicsFile = nil, ""

	if !idPattern.MatchString(f.ID) {
		p.add("required: lower-case letters, digits and '-', at most 63", "id")
	}
	c.Location = validateTimezone(p, f.Timezone)
	c.Cohort = validateCohort(p, f.Cohort)
	c.Windows = validateWindows(p, f.Windows, c.Location)
	c.Providers = validateProviders(p, f.Providers)
	c.Shards, c.DeviceCap = validateSizes(p, f.Shards, f.DeviceCap)
	c.Dedupe = validateDedupe(p, f.Dedupe)
	c.Schedule = validateSchedule(p, f.Schedule)
	c.Notify = validateNotify(p, f.Notify)
	c.Limits = validateLimits(p, f.Limits)
	c.Clinics = validateClinics(p, f.Clinics)
	c.Allocation = validateAllocation(p, f.Allocation)

	if len(p.errs) > 0 {
		return nil, &ValidationError{Errors: p.errs}
	}
	return c, nil
}

// problems collects the problems of one file, each with its field path
// and, given the YAML tree, its line: a file is reported whole, not one
// problem per attempt.
type problems struct {
	root *yaml.Node
	errs []*FieldError
}

// add records a problem of the field at path (map keys and sequence
// indexes, as lineOf takes them).
func (p *problems) add(msg string, path ...any) {
	p.errs = append(p.errs, &FieldError{Line: lineOf(p.root, path...), Field: fieldName(path...), Msg: msg})
}

// validateTimezone loads the campaign's time zone; UTC stands in for an
// unknown one, so that the times after it can still be checked.
func validateTimezone(p *problems, name string) *time.Location {
	tz := cmp.Or(name, DefaultTimezone)
	loc, err := time.LoadLocation(tz)
	if err != nil {
		p.add(fmt.Sprintf("unknown time zone %q", tz), "timezone")
		return time.UTC
	}
	return loc
}

func validateCohort(p *problems, fc FileCohort) Cohort {
	from, err1 := ParseDate(fc.BornFrom)
	if err1 != nil {
		p.add(err1.Error(), "cohort", "born_from")
	}
	to, err2 := ParseDate(fc.BornTo)
	if err2 != nil {
		p.add(err2.Error(), "cohort", "born_to")
	}
	if err1 == nil && err2 == nil && to.Before(from) {
		p.add("born_to is before born_from", "cohort", "born_to")
	}
	return Cohort{BornFrom: from, BornTo: to}
}

// validateWindows checks the windows; times without a zone are read in
// loc.
func validateWindows(p *problems, fws []FileWindow, loc *time.Location) []Window {
	if len(fws) == 0 {
		p.add("at least one window is required", "windows")
	}
	var out []Window
	seen := map[string]bool{}
	for i, fw := range fws {
		w := Window{ID: fw.ID, CatchUp: fw.CatchUp}
		if !namePattern.MatchString(fw.ID) {
			p.add("required: lower-case letters, digits, '-' and '_', at most 32", "windows", i, "id")
		} else if seen[fw.ID] {
			p.add(fmt.Sprintf("window %q appears twice", fw.ID), "windows", i, "id")
		}
		seen[fw.ID] = true
		var errO, errC error
		w.Opens, errO = parseTime(fw.Opens, loc)
		if errO != nil {
			p.add(errO.Error(), "windows", i, "opens")
		}
		w.Closes, errC = parseTime(fw.Closes, loc)
		if errC != nil {
			p.add(errC.Error(), "windows", i, "closes")
		}
		if errO == nil && errC == nil && !w.Closes.After(w.Opens) {
			p.add("closes must be after opens", "windows", i, "closes")
		}
		w.AllocateAt = w.Closes.Add(DefaultAllocateDelay)
		if fw.AllocateAt != "" {
			at, err := parseTime(fw.AllocateAt, loc)
			switch {
			case err != nil:
				p.add(err.Error(), "windows", i, "allocate_at")
			case errC == nil && at.Before(w.Closes):
				p.add("the round is allocated at or after the window closes", "windows", i, "allocate_at")
			default:
				w.AllocateAt = at
			}
		}
		validateDigits(p, i, fw)
		w.Digits = append([]int(nil), fw.Digits...)
		out = append(out, w)
	}
	return out
}

// validateDigits checks the birth-date digits window i admits: a catch-up
// window admits them all, any other lists each of its own once.
func validateDigits(p *problems, i int, fw FileWindow) {
	switch {
	case fw.CatchUp && len(fw.Digits) > 0:
		p.add("a catch-up window admits every digit: leave digits out", "windows", i, "digits")
	case !fw.CatchUp && len(fw.Digits) == 0:
		p.add("list the birth-date digits (0-9) it admits, or set catch_up: true", "windows", i, "digits")
	}
	seen := map[int]bool{}
	for j, d := range fw.Digits {
		if d < 0 || d > 9 {
			p.add(fmt.Sprintf("digit %d is not 0-9", d), "windows", i, "digits", j)
		} else if seen[d] {
			p.add(fmt.Sprintf("digit %d appears twice", d), "windows", i, "digits", j)
		}
		seen[d] = true
	}
}

// validateProviders checks the identity providers and fills in their
// defaults.
func validateProviders(p *problems, fps []FileProvider) []Provider {
	if len(fps) == 0 {
		p.add("at least one identity provider is required", "providers")
	}
	var out []Provider
	seen := map[string]bool{}
	for i, fp := range fps {
		if !namePattern.MatchString(fp.Name) {
			p.add("required: lower-case letters, digits, '-' and '_', at most 32", "providers", i, "name")
		} else if seen[fp.Name] {
			p.add(fmt.Sprintf("provider %q appears twice", fp.Name), "providers", i, "name")
		}
		seen[fp.Name] = true
		out = append(out, validateProvider(p, i, fp))
	}
	return out
}

// validateProvider checks provider i's URL and limits, all but its name.
func validateProvider(p *problems, i int, fp FileProvider) Provider {
	pr := Provider{Name: fp.Name, URL: fp.URL, Concurrency: fp.Concurrency, Rate: fp.Rate, Burst: fp.Burst}
	if u, err := url.Parse(fp.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("required: an http or https URL", "providers", i, "url")
	}
	pr.LoginURL = fp.LoginURL
	if pr.LoginURL == "" {
		pr.LoginURL = strings.TrimRight(fp.URL, "/") + "/login"
	} else if u, err := url.Parse(fp.LoginURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("want an http or https URL", "providers", i, "login_url")
	}
	pr.Timeout = 5 * time.Second
	if fp.Timeout != "" {
		d, err := time.ParseDuration(fp.Timeout)
		if err != nil || d <= 0 {
			p.add("want a positive duration such as 2s or 500ms", "providers", i, "timeout")
		}
		pr.Timeout = d
	}
	if pr.Concurrency == 0 {
		pr.Concurrency = 32
	}
	if pr.Concurrency < 0 || pr.Concurrency > 10000 {
		p.add("want 1 to 10000", "providers", i, "concurrency")
	}
	if pr.Rate < 0 {
		p.add("want 0 (unlimited) or a positive number of calls per second", "providers", i, "rate")
	}
	if pr.Burst < 0 {
		p.add("want a positive number", "providers", i, "burst")
	}
	if pr.Burst == 0 {
		pr.Burst = max(1, pr.Concurrency)
	}
	return pr
}

// validateSizes checks the shard count and the per-device cap, with their
// defaults.
func validateSizes(p *problems, fileShards, fileDeviceCap int) (shards, deviceCap int) {
	shards = cmp.Or(fileShards, DefaultShards)
	if shards < 1 || shards > DefaultMaxShards {
		p.add(fmt.Sprintf("want 1 to %d", DefaultMaxShards), "shards")
	}
	deviceCap = cmp.Or(fileDeviceCap, DefaultDeviceCap)
	if deviceCap < 1 {
		p.add("want at least 1", "device_cap")
	}
	return shards, deviceCap
}

// validateLimits checks the identity-side caps, with their defaults.
func validateLimits(p *problems, fl *FileLimits) Limits {
	if fl == nil {
		fl = &FileLimits{}
	}
	l := Limits{PhoneCap: cmp.Or(fl.PhoneCap, DefaultPhoneCap)}
	if l.PhoneCap < 1 {
		p.add("want at least 1: the people one phone may register", "limits", "phone_cap")
	}
	return l
}

func validateDedupe(p *problems, fd FileDedupe) Dedupe {
	d := Dedupe{
		BloomFPRate:    cmp.Or(fd.BloomFPRate, DefaultBloomFPRate),
		ExpectedPeople: cmp.Or(fd.ExpectedPeople, 1_000_000),
	}
	if d.BloomFPRate <= 0 || d.BloomFPRate >= 1 {
		p.add("want a rate between 0 and 1, e.g. 0.001", "dedupe", "bloom_fp_rate")
	}
	if d.ExpectedPeople < 1 {
		p.add("want a positive head count", "dedupe", "expected_people")
	}
	return d
}

// validateSchedule checks the schedule; without bands a day has the
// usual three.
func validateSchedule(p *problems, fs FileSchedule) Schedule {
	start, err := ParseDate(fs.Start)
	if err != nil {
		p.add(err.Error(), "schedule", "start")
	}
	s := Schedule{Start: start, Days: fs.Days}
	if s.Days < 1 || s.Days > 366 {
		p.add("want 1 to 366", "schedule", "days")
	}
	bands := fs.Bands
	if len(bands) == 0 {
		bands = []string{"09:00-12:00", "13:00-15:00", "15:00-18:00"}
	}
	if len(bands) > 24 {
		p.add("at most 24 bands", "schedule", "bands")
	}
	for i, b := range bands {
		if !bandPattern.MatchString(b) || b[6:] <= b[:5] {
			p.add(`want "HH:MM-HH:MM" with the end after the start`, "schedule", "bands", i)
			continue
		}
		s.Bands = append(s.Bands, Band{Start: b[:5], End: b[6:]})
	}
	return s
}

func validateNotify(p *problems, fn FileNotify) Notify {
	n := Notify{Rate: cmp.Or(fn.Rate, 100), StatusURL: fn.StatusURL, Language: cmp.Or(fn.Language, "ko")}
	if n.Rate < 0 {
		p.add("want a positive number of messages per second", "notify", "rate")
	}
	if n.Language != "ko" && n.Language != "en" {
		p.add("want ko or en", "notify", "language")
	}
	if n.StatusURL != "" {
		if u, err := url.Parse(n.StatusURL); err != nil || u.Host == "" {
			p.add("want an absolute URL", "notify", "status_url")
		}
	}
	return n
}

func validateClinics(p *problems, fcs []FileClinic) []Clinic {
	var out []Clinic
	seen := make(map[string]bool, len(fcs))
	for i, fc := range fcs {
		if fc.ID == "" || len(fc.ID) > 64 {
			p.add("required, at most 64 characters", "clinics", i, "id")
		} else if seen[fc.ID] {
			p.add(fmt.Sprintf("clinic %q appears twice", fc.ID), "clinics", i, "id")
		}
		seen[fc.ID] = true
		if !regionPattern.MatchString(fc.Region) {
			p.add("want a 5-digit region code", "clinics", i, "region")
		}
		if fc.Capacity < 0 {
			p.add("want 0 or more slots per band", "clinics", i, "capacity")
		}
		if len(fc.Address) > 200 {
			p.add("at most 200 bytes", "clinics", i, "address")
		}
		if fc.Lat < -90 || fc.Lat > 90 || fc.Lng < -180 || fc.Lng > 180 {
			p.add("coordinates out of range", "clinics", i, "lat")
		}
		out = append(out, Clinic{ID: fc.ID, Name: cmp.Or(fc.Name, fc.ID), Region: fc.Region, Lat: fc.Lat, Lng: fc.Lng, Capacity: fc.Capacity, Address: fc.Address})
	}
	return out
}

func validateAllocation(p *problems, fa *FileAllocation) Allocation {
	a := Allocation{MaxDistanceKm: DefaultMaxDistanceKm}
	if fa == nil || fa.MaxDistanceKm == nil {
		return a
	}
	a.MaxDistanceKm = *fa.MaxDistanceKm
	if a.MaxDistanceKm < 0 || a.MaxDistanceKm > 20_000 {
		p.add("want 0 (any distance) to 20000 km", "allocation", "max_distance_km")
	}
	return a
}

var regionPattern = regexp.MustCompile(`^\d{5}$`)

// parseTime accepts RFC 3339 or "YYYY-MM-DD HH:MM[:SS]" in loc.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required: a time such as 2021-08-09T20:00:00+09:00 or 2021-08-09 20:00")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a time: want 2021-08-09T20:00:00+09:00 or 2021-08-09 20:00", s)
}

func readClinicsCSV(path string) ([]FileClinic, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open clinics file: %w", err)
	}
	defer fh.Close()
	r := csv.NewReader(fh)
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("read clinics header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"id", "name", "region", "lat", "lng", "capacity"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("clinics file: header lacks column %q (want id,name,region,lat,lng,capacity and optionally address)", need)
		}
	}
	var out []FileClinic
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("clinics file: %w", err)
		}
		lat, e1 := strconv.ParseFloat(rec[col["lat"]], 64)
		lng, e2 := strconv.ParseFloat(rec[col["lng"]], 64)
		capy, e3 := strconv.Atoi(rec[col["capacity"]])
		if err := errors.Join(e1, e2, e3); err != nil {
			return nil, fmt.Errorf("clinics file line %d: %w", line, err)
		}
		fc := FileClinic{ID: rec[col["id"]], Name: rec[col["name"]], Region: rec[col["region"]], Lat: lat, Lng: lng, Capacity: capy}
		if i, ok := col["address"]; ok {
			fc.Address = rec[i]
		}
		out = append(out, fc)
	}
}

// lineOf finds the line of a field in the YAML tree; path elements are map
// keys (string) and sequence indexes (int). It returns the deepest line it
// reached, 0 without a tree.
func lineOf(root *yaml.Node, path ...any) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next = n.Content[i+1]
						line = n.Content[i].Line
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func fieldName(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}
