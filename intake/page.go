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
)

//go:embed page/index.html page/intake.js
var pageFiles embed.FS

var (
	pageTemplate = template.Must(template.ParseFS(pageFiles, "page/index.html"))
	pageScript   = func() []byte { b, _ := pageFiles.ReadFile("page/intake.js"); return b }()
	// pagePolicy allows the page's one inline <style> block by its hash
	// (it holds no template action, so the rendered text is the file's)
	// and its script only as the file /assets/intake.js.
	pagePolicy = httpapi.HTMLPolicy(httpapi.StyleHash(inlineStyle(pageFiles, "page/index.html")))
)

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

// pageText is the page's wording in one language.
type pageText struct {
	Title, NoCampaign, Intro, Schedule, Digits, Opens, Closes, OpenNow, DigitRule string
	Submit, Provider, Token, Birthdate, Phone, Region, Clinic, Earliest, Send     string
	Lookup, Receipt, Check                                                        string
}

var texts = map[string]pageText{
	"ko": {
		Title: "사전 예약 신청", NoCampaign: "현재 진행 중인 접수가 없습니다.",
		Intro:    "생년월일 끝자리(10부제)에 해당하는 기간에 신청하세요. 신청하면 바로 접수번호를 받고, 배정 결과는 문자로 알려 드립니다.",
		Schedule: "접수 일정", Digits: "생년월일 끝자리", Opens: "시작", Closes: "마감", OpenNow: "접수 중",
		DigitRule: "태어난 날의 끝자리입니다. 예: 19일생은 9, 10일생은 0. 추가 접수 기간에는 누구나 신청할 수 있습니다.",
		Submit:    "신청하기", Provider: "본인 인증 기관", Token: "인증 토큰", Birthdate: "생년월일", Phone: "휴대전화 번호",
		Region: "거주 지역 코드 (시군구)", Clinic: "희망 의료기관 (선택)", Earliest: "희망 시작일 (선택)", Send: "신청",
		Lookup: "접수 상태 조회", Receipt: "접수번호", Check: "조회",
	},
	"en": {
		Title: "Pre-registration", NoCampaign: "No campaign is open for registration.",
		Intro:    "Apply in the window for the last digit of your day of birth. You get a receipt at once; your appointment comes later by text message.",
		Schedule: "Schedule", Digits: "Last digit of the day of birth", Opens: "Opens", Closes: "Closes", OpenNow: "open now",
		DigitRule: "The last digit of the day you were born: the 19th is 9, the 10th is 0. Catch-up windows are open to everyone.",
		Submit:    "Apply", Provider: "Identity provider", Token: "Identity token", Birthdate: "Date of birth", Phone: "Mobile phone",
		Region: "Region code (si/gun/gu)", Clinic: "Preferred clinic (optional)", Earliest: "Earliest date (optional)", Send: "Submit",
		Lookup: "Check your status", Receipt: "Receipt", Check: "Check",
	},
}

// scriptText is what the page's script says, per language.
var scriptText = map[string]map[string]string{
	"ko": {
		"sending": "보내는 중…", "accepted": "접수되었습니다. 접수번호:", "network": "연결에 실패했습니다. 잠시 후 다시 시도하세요.",
		"error": "처리하지 못했습니다.", "retry": "%s초 후 다시 시도하세요.", "next": "다음 접수:",
		"e400": "입력을 확인하세요.", "e403": "지금은 접수 기간이 아닙니다.", "e404": "찾을 수 없습니다.", "e413": "요청이 너무 큽니다.",
		"e422": "같은 신청 키로 다른 내용을 보냈습니다.", "e429": "요청이 너무 많습니다.", "e503": "접속이 많아 잠시 처리할 수 없습니다.",
		"s_received": "접수됨 (처리 중)", "s_registered": "등록됨", "s_duplicate": "중복 신청", "s_held": "검토 중", "s_rejected": "반려됨",
		"s_unassigned": "이번 배정에서 제외 (다음 배정으로 이월)", "s_scheduled": "예약 배정됨", "s_notified": "문자 발송됨",
		"s_delivered": "문자 도착", "s_cancelled": "취소됨",
		"r_invalid_token": "인증 실패", "r_birthdate_mismatch": "생년월일 불일치", "r_not_in_cohort": "대상 아님",
		"r_unprocessable": "처리 불가", "r_operator_rejected": "검토 후 반려",
	},
	"en": {
		"sending": "Sending…", "accepted": "Received. Your receipt:", "network": "Could not connect. Please try again shortly.",
		"error": "That did not work.", "retry": "Try again in %s s.", "next": "Your window:",
		"e400": "Please check your input.", "e403": "Your window is not open now.", "e404": "Not found.", "e413": "The request is too large.",
		"e422": "This submission key was already used with other details.", "e429": "Too many requests.", "e503": "Very busy right now.",
		"s_received": "received (being processed)", "s_registered": "registered", "s_duplicate": "duplicate", "s_held": "held for review",
		"s_rejected": "rejected", "s_unassigned": "no slot this round (rolled into the next)", "s_scheduled": "appointment scheduled",
		"s_notified": "text message sent", "s_delivered": "text message delivered", "s_cancelled": "cancelled",
		"r_invalid_token": "identity check failed", "r_birthdate_mismatch": "birth date does not match", "r_not_in_cohort": "not in the cohort",
		"r_unprocessable": "could not be processed", "r_operator_rejected": "rejected on review",
	},
}

type pageWindow struct {
	Digits, Opens, Closes string
	Open                  bool
}

type pageData struct {
	Lang      string
	T         pageText
	Messages  string
	Campaign  *campaign.Campaign
	Campaigns []*campaign.Campaign
	Windows   []pageWindow
	BornFrom  string
	BornTo    string
}

// pageLang picks the page's language: ?lang=, else Accept-Language, else
// Korean.
func pageLang(r *http.Request) string {
	switch l := r.URL.Query().Get("lang"); l {
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
	lang := pageLang(r)
	msgs, _ := json.Marshal(scriptText[lang])
	d := pageData{Lang: lang, T: texts[lang], Messages: string(msgs)}
	cat := s.cat.cur.Load()
	if cat != nil {
		for _, e := range cat.order {
			d.Campaigns = append(d.Campaigns, e.c)
		}
		if e, ok := cat.get(r.URL.Query().Get("campaign")); ok {
			d.Campaign = e.c
		} else if len(cat.order) > 0 {
			d.Campaign = cat.order[0].c
		}
	}
	if c := d.Campaign; c != nil {
		now := s.now()
		loc := c.Location
		if loc == nil {
			loc = time.UTC
		}
		for _, win := range c.Windows {
			digits := "0-9"
			if !win.CatchUp {
				ds := make([]string, len(win.Digits))
				for i, x := range win.Digits {
					ds[i] = strconv.Itoa(x)
				}
				digits = strings.Join(ds, ", ")
			}
			d.Windows = append(d.Windows, pageWindow{
				Digits: digits, Opens: win.Opens.In(loc).Format("2006-01-02 15:04"), Closes: win.Closes.In(loc).Format("2006-01-02 15:04"),
				Open: win.OpenAt(now),
			})
		}
		d.BornFrom, d.BornTo = c.Cohort.BornFrom.Format(prereg.DateLayout), c.Cohort.BornTo.Format(prereg.DateLayout)
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		s.log.Error("render citizen page", slog.Any("err", err))
		w.Header().Set("Retry-After", "1")
		http.Error(w, "page unavailable", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	httpapi.SetHTMLHeaders(h, pagePolicy)
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(buf.Bytes())
}

func serveScript(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(pageScript)
}
