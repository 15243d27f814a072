package sim

import (
	"crypto/rand"
	"encoding/binary"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LoginTTL is how long a token from the sign-in page is good for: the
// citizen submits the intent right after signing in, and intake stamps
// the intent when it accepts it, which is the time verify compares with.
const LoginTTL = 10 * time.Minute

// LoginPerson is a synthetic person the sign-in page offers to sign in
// as. Nothing here is real: the names and numbers are made up.
type LoginPerson struct {
	ID        string // the provider's person id
	Name      string
	Birthdate string // YYYY-MM-DD
	Phone     string // 010-XXXX-XXXX
}

// DemoLoginPeople are the people the sign-in page lists unless the
// provider is given others (IdP.People).
var DemoLoginPeople = []LoginPerson{
	{ID: "demo-kim", Name: "김하늘 (Kim Haneul)", Birthdate: "1990-08-13", Phone: "010-2345-6789"},
	{ID: "demo-lee", Name: "이바다 (Lee Bada)", Birthdate: "1985-03-21", Phone: "010-3456-7890"},
	{ID: "demo-park", Name: "박구름 (Park Gureum)", Birthdate: "1997-11-05", Phone: "010-4567-8901"},
}

// loginText is the sign-in page's wording in one language.
type loginText struct {
	Title, Intro, Pick, Or, Typed, PersonID, Birthdate, Phone, SignInAs, Synthetic string
}

var loginTexts = map[string]loginText{
	"ko": {
		Title: "본인 인증", Intro: "사전 예약 신청을 위해 본인을 확인합니다.", Pick: "인증할 사람을 고르세요",
		Or: "또는 직접 입력", Typed: "직접 입력한 사람으로 인증", PersonID: "이용자 아이디",
		Birthdate: "생년월일", Phone: "휴대전화 번호", SignInAs: "%s 님으로 인증",
		Synthetic: "모의 인증 기관입니다. 목록의 사람과 번호는 모두 가상입니다.",
	},
	"en": {
		Title: "Identity check", Intro: "Confirm who you are for the pre-registration.", Pick: "Choose who signs in",
		Or: "Or type a person", Typed: "Sign in as the person typed", PersonID: "User id",
		Birthdate: "Date of birth", Phone: "Mobile phone", SignInAs: "Sign in as %s",
		Synthetic: "A simulated identity provider: every person and number here is made up.",
	},
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Provider}} · {{.T.Title}}</title>
<style>body{font-family:system-ui,"Noto Sans CJK KR",sans-serif;max-width:30rem;margin:0 auto;padding:1rem;line-height:1.5;color:#1b1b1b}
button,input{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.25rem 0}
button{background:#1d3f8f;color:#fff;border:0;border-radius:4px;cursor:pointer}button:focus-visible,input:focus-visible{outline:3px solid #b35c00;outline-offset:2px}
label{display:block;font-weight:600;margin-top:.5rem}.note{color:#4a4a4a;font-size:.9rem}</style>
</head><body><main>
<h1>{{.Provider}} · {{.T.Title}}</h1>
<p>{{.T.Intro}}</p>
<p class="note">{{.T.Synthetic}}</p>
<form method="post" action="/login">
<input type="hidden" name="campaign" value="{{.Campaign}}"><input type="hidden" name="device" value="{{.Device}}">
<input type="hidden" name="redirect_uri" value="{{.Redirect}}"><input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="lang" value="{{.Lang}}">
<h2>{{.T.Pick}}</h2>
{{range $i, $p := .People}}<button type="submit" name="person" value="{{$i}}">{{printf $.T.SignInAs (printf "%s · %s" $p.Name $p.Birthdate)}}</button>
{{end}}
<h2>{{.T.Or}}</h2>
<label for="typed-id">{{.T.PersonID}}</label><input id="typed-id" name="typed_id" autocomplete="off">
<label for="typed-birthdate">{{.T.Birthdate}}</label><input id="typed-birthdate" name="typed_birthdate" type="date">
<label for="typed-phone">{{.T.Phone}}</label><input id="typed-phone" name="typed_phone" type="tel" placeholder="010-1234-5678">
<button type="submit" name="person" value="typed">{{.T.Typed}}</button>
</form></main></body></html>
`))

// serveLogin is the provider's sign-in page, as PASS or Kakao show one:
// GET /login?campaign=&device=&redirect_uri=&state= lists synthetic
// people to sign in as (or takes one typed); the POST issues a token
// bound to the campaign and the device, valid for LoginTTL, and sends the
// browser back to redirect_uri with token, provider and state in the URL
// fragment, which never reaches a server log or a Referer.
// A real provider checks redirect_uri against the client's registered
// addresses; the simulation takes any http(s) address.
func (p *IdP) serveLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	campaign, device, state := r.Form.Get("campaign"), r.Form.Get("device"), r.Form.Get("state")
	back, err := url.Parse(r.Form.Get("redirect_uri"))
	if err != nil || (back.Scheme != "http" && back.Scheme != "https") || back.Host == "" || campaign == "" || device == "" || state == "" ||
		len(campaign) > 64 || len(device) > 128 || len(state) > 128 {
		http.Error(w, "want campaign, device, state and an absolute http(s) redirect_uri", http.StatusBadRequest)
		return
	}
	lang := loginLang(r)
	people := p.People
	if people == nil {
		people = DemoLoginPeople
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+back.Scheme+"://"+back.Host+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodGet {
		h.Set("Content-Type", "text/html; charset=utf-8")
		_ = loginPage.Execute(w, map[string]any{
			"Lang": lang, "T": loginTexts[lang], "Provider": p.Name, "People": people,
			"Campaign": campaign, "Device": device, "Redirect": back.String(), "State": state,
		})
		return
	}
	var who LoginPerson
	switch choice := r.Form.Get("person"); choice {
	case "typed":
		who = LoginPerson{ID: strings.TrimSpace(r.Form.Get("typed_id")), Birthdate: r.Form.Get("typed_birthdate"), Phone: r.Form.Get("typed_phone")}
		if _, err := time.Parse("2006-01-02", who.Birthdate); err != nil || phoneE164(who.Phone) == "" {
			http.Error(w, "want a date of birth and a 010 mobile number", http.StatusBadRequest)
			return
		}
		if who.ID == "" {
			who.ID = "typed-" + who.Birthdate + "-" + phoneE164(who.Phone)
		}
	default:
		i := -1
		for j := range people {
			if choice == strconv.Itoa(j) {
				i = j
			}
		}
		if i < 0 {
			http.Error(w, "no such person", http.StatusBadRequest)
			return
		}
		who = people[i]
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	token := p.Issue(TokenClaims{
		Person: who.ID, Birthdate: who.Birthdate, Phone: phoneE164(who.Phone), Device: device,
		Nonce: int(binary.BigEndian.Uint32(nonce[:]) >> 1), Campaign: campaign, Expires: now().Add(LoginTTL).UTC().Truncate(time.Second),
	})
	back.Fragment = ""
	back.RawFragment = ""
	frag := url.Values{"token": {token}, "provider": {p.Name}, "state": {state}}.Encode()
	http.Redirect(w, r, back.String()+"#"+frag, http.StatusSeeOther)
}

// loginLang is ?lang= (or the form's), else Accept-Language, else Korean.
func loginLang(r *http.Request) string {
	if l := r.Form.Get("lang"); l == "ko" || l == "en" {
		return l
	}
	al := strings.ToLower(r.Header.Get("Accept-Language"))
	if strings.HasPrefix(al, "en") {
		return "en"
	}
	return "ko"
}

// phoneE164 turns a Korean mobile number (010-1234-5678) into E.164
// (+821012345678); "" when it is not one.
func phoneE164(s string) string {
	var d []byte
	for _, c := range []byte(s) {
		switch {
		case c >= '0' && c <= '9':
			d = append(d, c)
		case c == '-' || c == ' ':
		default:
			return ""
		}
	}
	if len(d) < 10 || len(d) > 11 || d[0] != '0' || d[1] != '1' {
		return ""
	}
	return "+82" + string(d[1:])
}
