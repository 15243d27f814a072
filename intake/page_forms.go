package intake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// The page without JavaScript: its forms post here and get the page back
// with the answer in it, in the page's language, from the same message
// table as the script. Each runs the JSON route's handler itself, so
// that limits, checks and answers are those of the API; the birth date
// travels in the form body only, never in a URL.

// maxForm bounds a form post's body.
const maxForm = 8 << 10

// capture is a ResponseWriter that keeps an answer to render it.
type capture struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (c *capture) Header() http.Header { return c.h }
func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}
func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

// apiAnswer is what the form pages read of a JSON answer.
type apiAnswer struct {
	Error      string            `json:"error"`
	Fields     map[string]string `json:"fields"`
	NextWindow *struct {
		Opens  time.Time `json:"opens"`
		Digits []int     `json:"digits"`
	} `json:"next_window"`
	Receipt string          `json:"receipt"`
	Status  prereg.Status   `json:"status"`
	Reason  prereg.Reason   `json:"reason"`
	Next    json.RawMessage `json:"next"`
	Slot    *slotAnswer     `json:"slot"`
}

// formValues reads a form post, at most maxForm bytes.
func formValues(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	return r.ParseForm() == nil
}

func (s *Service) serveSubmitForm(w http.ResponseWriter, r *http.Request) {
	if !formValues(w, r) {
		httpapi413(w)
		return
	}
	f := r.PostForm
	req := Request{
		Campaign: f.Get("campaign"), Provider: f.Get("provider"), IdentityToken: strings.TrimSpace(f.Get("identity_token")),
		Birthdate: f.Get("birthdate"), Phone: f.Get("phone"), Region: f.Get("region"), Clinic: f.Get("clinic"),
		Earliest: f.Get("earliest"), DeviceID: f.Get("device_id"),
	}
	body, _ := json.Marshal(req)
	c := &capture{h: http.Header{}}
	s.submit(c, submission{
		ctx: r.Context(), contentType: "application/json", contentLength: int64(len(body)), idemKey: f.Get("idempotency_key"),
		addr: func() netip.Addr { return ClientAddr(r, s.cfg.TrustedProxies) },
		body: func() ([]byte, error) { return body, nil },
	})
	d := s.pageData(r, req.Campaign)
	// The same device and key again: posting the form once more is a
	// retry of this submission, not another one.
	if req.DeviceID != "" {
		d.DeviceID = req.DeviceID
	}
	if k := f.Get("idempotency_key"); k != "" {
		d.IdemKey = k
	}
	res := s.formResult(d, c, true)
	if c.status == http.StatusAccepted {
		d.Form["receipt"], d.Form["lookup_birthdate"] = res.Receipt, req.Birthdate
	} else {
		for _, k := range []string{"provider", "identity_token", "birthdate", "phone", "region", "earliest"} {
			d.Form[k] = f.Get(k)
		}
	}
	d.SubmitResult = &res
	s.writeFormPage(w, c, d)
}

func (s *Service) serveLookupForm(w http.ResponseWriter, r *http.Request) {
	if !formValues(w, r) {
		httpapi413(w)
		return
	}
	receipt, birthdate := strings.TrimSpace(r.PostFormValue("receipt")), r.PostFormValue("birthdate")
	c := &capture{h: http.Header{}}
	// The lookup's own handler, on a request that exists only here: the
	// birth date is in this URL value, which is never sent or logged.
	q := r.Clone(r.Context())
	q.Method = http.MethodGet
	q.URL = &url.URL{Path: "/v1/intents/" + url.PathEscape(receipt), RawQuery: url.Values{"birthdate": {birthdate}}.Encode()}
	q.SetPathValue("receipt", receipt)
	s.serveStatus(c, q)
	d := s.pageData(r, "")
	d.Form["receipt"], d.Form["lookup_birthdate"] = receipt, birthdate
	res := s.formResult(d, c, false)
	d.LookupResult = &res
	s.writeFormPage(w, c, d)
}

// writeFormPage writes the page with an answer: the API's status (so a
// refusal is one to a client as well), its Retry-After, never cached.
func (s *Service) writeFormPage(w http.ResponseWriter, c *capture, d pageData) {
	if ra := c.h.Get("Retry-After"); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	status := c.status
	if status == http.StatusAccepted {
		status = http.StatusOK
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		s.renderPage(w, d) // answers 503 itself
		return
	}
	httpapi.SetHTMLHeaders(w.Header(), pagePolicy)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// formResult puts an API answer into words.
func (s *Service) formResult(d pageData, c *capture, submit bool) pageResult {
	m := d.M
	var a apiAnswer
	_ = json.Unmarshal(c.body.Bytes(), &a)
	loc := time.UTC
	if d.Campaign != nil && d.Campaign.Location != nil {
		loc = d.Campaign.Location
	}
	switch {
	case submit && c.status == http.StatusAccepted:
		return pageResult{OK: true, Text: m["accepted"], Receipt: a.Receipt, Lines: append(nextLines(m, a.Next, loc), m["keep_receipt"])}
	case !submit && c.status == http.StatusOK:
		t := cmpStr(m["s_"+string(a.Status)], string(a.Status))
		if a.Reason != "" {
			t += " (" + cmpStr(m["r_"+string(a.Reason)], string(a.Reason)) + ")"
		}
		lines := nextLines(m, a.Next, loc)
		if a.Slot != nil && len(a.Next) == 0 {
			lines = append(lines, m["next_appointment"]+" "+a.Slot.Clinic+", "+a.Slot.Day+" "+a.Slot.Time)
		}
		return pageResult{OK: true, Text: t, Lines: lines}
	}
	res := pageResult{Text: cmpStr(m["e_"+a.Error], m["error"])}
	keys := make([]string, 0, len(a.Fields))
	for k := range a.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		res.Fields = append(res.Fields, cmpStr(m["f_"+k], m["e_invalid"]))
	}
	if a.NextWindow != nil {
		res.Lines = append(res.Lines, m["next_window"]+" "+a.NextWindow.Opens.In(loc).Format("2006-01-02 15:04"))
	}
	if ra := c.h.Get("Retry-After"); ra != "" {
		res.Lines = append(res.Lines, strings.Replace(m["retry_later"], "%s", ra, 1))
	}
	return res
}

// nextLines puts a "next" block into words: the round and the text
// message's expected time before allocation, the appointment after.
func nextLines(m map[string]string, raw json.RawMessage, loc *time.Location) []string {
	if len(raw) == 0 {
		return nil
	}
	var n struct {
		RoundAt    time.Time `json:"round_at"`
		SMSFrom    time.Time `json:"sms_from"`
		SMSUntil   time.Time `json:"sms_until"`
		ClinicName string    `json:"clinic_name"`
		Address    string    `json:"address"`
		Start      time.Time `json:"start"`
	}
	if json.Unmarshal(raw, &n) != nil {
		return nil
	}
	const layout = "2006-01-02 15:04"
	var out []string
	if !n.Start.IsZero() {
		out = append(out, m["next_appointment"]+" "+n.ClinicName+", "+n.Address+", "+n.Start.In(loc).Format(layout))
	}
	if !n.RoundAt.IsZero() {
		out = append(out, m["next_round"]+" "+n.RoundAt.In(loc).Format(layout))
	}
	if !n.SMSFrom.IsZero() {
		out = append(out, m["next_sms"]+" "+n.SMSFrom.In(loc).Format(layout)+" – "+n.SMSUntil.In(loc).Format(layout))
	}
	return out
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func httpapi413(w http.ResponseWriter) {
	httpapi.WriteError(w, httpapi.CodeTooLarge, map[string]any{"max_bytes": maxForm})
}
