package intake

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/region"
)

//go:embed page/index.html page/intake.js page/messages.json
var pageFiles embed.FS

var (
	pageTemplate = template.Must(template.ParseFS(pageFiles, "page/index.html"))
	pageScript   = func() []byte { b, _ := pageFiles.ReadFile("page/intake.js"); return b }()
	// pagePolicy allows the page's one inline <style> block by its hash
	// (it holds no template action, so the rendered text is the file's)
	// and its script only as the file /assets/intake.js.
	pagePolicy = httpapi.HTMLPolicy(httpapi.StyleHash(inlineStyle(pageFiles, "page/index.html")))
)

// messages is every word the citizen sees, by language and key: the
// page's labels, the script's answers and the no-JavaScript form pages'
// answers all come from it (page/messages.json). Keys: e_<error code>
// for a refusal, f_<field> for a field error, s_<status>, r_<reason>.
var messages = func() map[string]map[string]string {
	b, err := pageFiles.ReadFile("page/messages.json")
	if err != nil {
		panic(err)
	}
	var m map[string]map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		panic("page/messages.json: " + err.Error())
	}
	return m
}()

// messagesJSON is the table of each language as the script reads it.
var messagesJSON = func() map[string]string {
	out := map[string]string{}
	for lang, m := range messages {
		b, _ := json.Marshal(m)
		out[lang] = string(b)
	}
	return out
}()

// inlineStyle is the text of a file's <style> block, for its hash.
func inlineStyle(fsys embed.FS, name string) string {
	b, err := fsys.ReadFile(name)
	if err != nil {
		panic(err)
	}
	_, rest, ok := strings.Cut(string(b), "<style>")
	css, _, ok2 := strings.Cut(rest, "</style>")
	if !ok || !ok2 || strings.Contains(css, "{{") {
		panic(name + ": want one <style> block without template actions")
	}
	return css
}

type pageWindow struct {
	Digits, Opens, Closes string
	Open                  bool
}

type pageProvider struct {
	Name, LoginURL string
}

// pageResult is an answer a form post renders in the page (no
// JavaScript): a line, an optional receipt, field errors and what
// happens next.
type pageResult struct {
	OK      bool
	Text    string
	Receipt string
	Fields  []string
	Lines   []string
}

type pageData struct {
	Lang      string
	M         map[string]string
	Messages  string
	Campaign  *campaign.Campaign
	Campaigns []*campaign.Campaign
	Windows   []pageWindow
	Providers []pageProvider
	Regions   []region.Region
	// Mode is the allocation of the window open now, as far as the page
	// can tell: "lottery" once the window's lottery seed is committed
	// (published), else "fcfs", the wording that promises nothing.
	Mode             string
	BornFrom, BornTo string
	TZ               string // the campaign's time zone, for the script's times
	// DeviceID and IdemKey are fresh for a page without JavaScript (the
	// script keeps its own): a form posted twice is one submission.
	DeviceID, IdemKey string
	// Form re-fills the forms after a post; SubmitResult and
	// LookupResult are the posts' answers.
	Form         map[string]string
	SubmitResult *pageResult
	LookupResult *pageResult
}

// pageLang picks the page's language: ?lang= (or the form's), else
// Accept-Language, else Korean.
func pageLang(r *http.Request) string {
	l := r.URL.Query().Get("lang")
	if r.Method == http.MethodPost {
		l = r.PostFormValue("lang")
	}
	switch l {
	case "ko", "en":
		return l
	}
	al := strings.ToLower(r.Header.Get("Accept-Language"))
	if strings.HasPrefix(al, "en") || (strings.Contains(al, "en") && !strings.Contains(al, "ko")) {
		return "en"
	}
	return "ko"
}

func (s *Service) servePage(w http.ResponseWriter, r *http.Request) {
	d := s.pageData(r, r.URL.Query().Get("campaign"))
	s.renderPage(w, d)
}

// pageData is what every rendering of the page needs.
func (s *Service) pageData(r *http.Request, campaignID string) pageData {
	lang := pageLang(r)
	d := pageData{
		Lang: lang, M: messages[lang], Messages: messagesJSON[lang], Mode: "fcfs", Regions: region.All(),
		DeviceID: keys.Random(18), IdemKey: keys.Random(18), Form: map[string]string{},
	}
	cat := s.cat.cur.Load()
	var e *entry
	if cat != nil {
		for _, e := range cat.order {
			d.Campaigns = append(d.Campaigns, e.c)
		}
		var ok bool
		if e, ok = cat.get(campaignID); !ok && len(cat.order) > 0 {
			e = cat.order[0]
		}
	}
	if e == nil {
		return d
	}
	c := e.c
	d.Campaign = c
	now := s.now()
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	var view campaignView
	_ = json.Unmarshal(e.json, &view)
	for i, win := range c.Windows {
		digits := "0-9"
		if !win.CatchUp {
			ds := make([]string, len(win.Digits))
			for i, x := range win.Digits {
				ds[i] = strconv.Itoa(x)
			}
			digits = strings.Join(ds, ", ")
		}
		open := win.OpenAt(now)
		d.Windows = append(d.Windows, pageWindow{
			Digits: digits, Opens: win.Opens.In(loc).Format("2006-01-02 15:04"), Closes: win.Closes.In(loc).Format("2006-01-02 15:04"),
			Open: open,
		})
		if open && i < len(view.Windows) && view.Windows[i].Lottery != nil {
			d.Mode = "lottery"
		}
	}
	for _, p := range c.Providers {
		d.Providers = append(d.Providers, pageProvider{Name: p.Name, LoginURL: p.LoginURL})
	}
	d.TZ = loc.String()
	d.BornFrom, d.BornTo = c.Cohort.BornFrom.Format(prereg.DateLayout), c.Cohort.BornTo.Format(prereg.DateLayout)
	return d
}

func (s *Service) renderPage(w http.ResponseWriter, d pageData) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		s.log.Error("render citizen page", slog.Any("err", err))
		w.Header().Set("Retry-After", "1")
		http.Error(w, "page unavailable", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	httpapi.SetHTMLHeaders(h, pagePolicy)
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func serveScript(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(pageScript)
}
