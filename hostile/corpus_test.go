package hostile_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
)

// expect is what a case may be answered with.
type expect int

const (
	// reject: a 4xx (or a 503 with Retry-After).
	reject expect = iota
	// noFault: anything but a 5xx (a 503 with Retry-After is fine): the
	// request may be one the contract accepts, such as an intent whose
	// device id carries an injection (it is hashed, never interpreted).
	noFault
	// rejectOrRedirect: a 4xx, or a redirect to a path on the same server
	// (net/http cleans "..": 301 to the cleaned path).
	rejectOrRedirect
)

// hcase is one hostile request, as the bytes sent on the wire.
type hcase struct {
	name string
	raw  []byte
	// lazy makes the bytes of a large case when it is sent, so that a
	// full corpus is not held in memory at once.
	lazy func() []byte
	want expect
	// trickle sends the request one byte at a time with this pause
	// (slowloris): the server must cut the connection or answer.
	trickle time.Duration
	// trickleFrom is where the trickle starts: what comes before is sent
	// at once (a slow body behind complete headers).
	trickleFrom int
	// halfClose closes the sending side once the request is out: a body
	// shorter than its Content-Length is truncated, not merely slow.
	halfClose bool
	// mayClose allows the connection to close without an answer (a server
	// that gives up on a request it cannot read); mayReset allows a reset
	// after a body too large to drain.
	mayClose, mayReset bool
	// rawOnly: net/http's client cannot send it.
	rawOnly bool
	// may501: a transfer coding the server does not implement.
	may501 bool
}

// The routes of both listeners, as templates: {r} is a receipt, {c} a
// campaign id.
var routes = []struct{ method, path string }{
	{"GET", "/"},
	{"GET", "/assets/intake.js"},
	{"GET", "/v1/campaigns/{c}"},
	{"POST", "/v1/intents"},
	{"GET", "/v1/intents/{r}"},
	{"GET", "/healthz"},
	{"GET", "/readyz"},
	{"GET", "/metrics"},
	{"GET", "/admin/v1/reports/dedupe"},
	{"GET", "/admin/v1/held"},
	{"POST", "/admin/v1/held/1/release"},
	{"POST", "/admin/v1/held/1/reject"},
	{"POST", "/admin/v1/outbox/resend"},
	{"POST", "/admin/v1/allocations"},
	{"GET", "/admin/v1/allocations/1"},
	{"POST", "/v1/sms/reports"},
	// After the others: the admin forgery rule picks 8 to 14 by index.
	{"PATCH", "/v1/intents/{r}"},
	{"POST", "/v1/intents/{r}/cancel"},
}

// injections are hostile strings for fields, headers, paths and queries.
var injections = []string{
	`' OR '1'='1`, `'; DROP TABLE registrations; --`, `1; SELECT pg_sleep(30)`, `" OR ""="`,
	`$1`, `%s%s%s%n`, `{{.}}`, `${jndi:ldap://127.0.0.1/a}`,
	`<script>alert(1)</script>`, `"><img src=x onerror=alert(1)>`, `javascript:alert(1)`, `</textarea><svg/onload=alert(1)>`,
	"\x00", "a\x00b", "\r\nX-Injected: 1", "\u202e" + "gnp.exe", "\u200b\u200b", "\ufeff",
	"０１０-１２３４-５６７８", "ⅰⅱⅲ", "раss", "kаkао", "\xff\xfe\xfd", "\xc0\xaf", "\xed\xa0\x80",
	"../../../../etc/passwd", "..\\..\\windows\\win.ini", "%2e%2e%2f%2e%2e%2f", "%00", "%ff",
	"\\u0000", `{"$gt":""}`, "[]", "{}", "null", "true", "-1", "1e999", "0x41",
}

// Fields of an intent (sim's body, docs/DESIGN.md "HTTP").
var fields = []string{"campaign", "provider", "identity_token", "birthdate", "phone", "region", "clinic", "earliest", "device_id"}

// opaque fields are not interpreted by intake (the token by the provider
// later, the device id only hashed): an injection there may be accepted.
var opaque = map[string]bool{"identity_token": true, "device_id": true}

// clinicShaped: intake checks only the shape of a clinic id (letters,
// digits, '.', '_', '-'); which clinic it names, the scheduler decides. So
// "null" or "1e999" there is a preference, not an attack.
func clinicShaped(s string) bool {
	return len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// headersUnderAttack are the headers injections go into.
var headersUnderAttack = []string{"Content-Type", "Idempotency-Key", "X-Forwarded-For", "User-Agent", "Authorization", "Cookie", "Referer", "Accept", "Accept-Encoding", "X-Sms-Signature", "If-None-Match", "Range"}

// generator makes the corpus from a seed and a world's valid bodies.
type generator struct {
	rng *rand.Rand
	// maxBody bounds the huge bodies (the short corpus keeps them small
	// enough for the race detector's pace).
	maxBody  int
	bases    [][]byte
	campaign string
}

func (g *generator) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }
func (g *generator) base() []byte            { return g.bases[g.rng.IntN(len(g.bases))] }

// path fills a route template with a real campaign and a forged receipt.
func (g *generator) path(p string) string {
	p = strings.ReplaceAll(p, "{c}", g.campaign)
	return strings.ReplaceAll(p, "{r}", g.forgedReceipt())
}

// forgedReceipt is a receipt-shaped string this system did not issue, or
// something that only looks like one.
func (g *generator) forgedReceipt() string {
	b := make([]byte, 26)
	for i := range b {
		b[i] = byte(g.rng.IntN(256))
	}
	r := base64.RawURLEncoding.EncodeToString(b)
	switch g.rng.IntN(5) {
	case 0:
		return r[:g.rng.IntN(len(r))]
	case 1:
		return r + strings.Repeat("A", g.rng.IntN(4000))
	case 2:
		return base64.StdEncoding.EncodeToString(b) // + and / and padding
	case 3:
		return urlEscape(g.pick(injections))
	}
	return r
}

func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// request renders an HTTP/1.1 request; Content-Length is the body's unless
// a header sets it.
func request(method, path string, headers [][2]string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: prereg.test\r\nConnection: close\r\n", method, path)
	hasLen := false
	for _, h := range headers {
		if strings.EqualFold(h[0], "Content-Length") || strings.EqualFold(h[0], "Transfer-Encoding") {
			hasLen = true
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if !hasLen && (body != nil || method == "POST" || method == "PUT" || method == "PATCH") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

var jsonCT = [2]string{"Content-Type", "application/json"}

// setField replaces one field of a JSON object with a raw JSON value.
func setField(body []byte, field string, value any) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		panic(err) // the bases are sim's valid bodies
	}
	m[field] = value
	out, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return out
}

// The rules: each makes one case from the generator's randomness.
var rules = []struct {
	name string
	make func(g *generator) hcase
}{
	{"malformed json", func(g *generator) hcase {
		b := g.base()
		var body []byte
		v := g.rng.IntN(8)
		switch v {
		case 0: // truncated
			body = b[:g.rng.IntN(len(b))]
		case 1: // a byte flipped into something JSON may not take
			body = bytes.Clone(b)
			const bad = "\x00\"{}[],:\\\xff"
			body[g.rng.IntN(len(body))] = bad[g.rng.IntN(len(bad))]
			if json.Valid(body) && bytes.IndexByte(body, 0) < 0 && bytes.IndexByte(body, 0xff) < 0 {
				// Still an intent (a comma inside a device id):
				// whatever intake makes of it, never a fault.
				return hcase{name: "(variant 1, still JSON)", raw: request("POST", "/v1/intents", [][2]string{jsonCT}, body), want: noFault}
			}
		case 2: // deeply nested
			d := 1 + g.rng.IntN(2100)
			body = []byte(strings.Repeat("[", d) + strings.Repeat("]", d))
		case 3: // nested inside a field
			d := 1 + g.rng.IntN(2100)
			body = setField(b, g.pick(fields), json.RawMessage(strings.Repeat(`{"a":`, d)+"1"+strings.Repeat("}", d)))
		case 4: // a wrong type
			f, val := g.pick(fields), []any{1e308, -1, true, nil, map[string]any{}, []any{}}[g.rng.IntN(6)]
			body = setField(b, f, val)
			if val == nil && (f == "clinic" || f == "earliest") {
				// null is JSON's "not given": the optional preference
				// is left out, and the intent stands.
				return hcase{name: "(variant 4, optional null)", raw: request("POST", "/v1/intents", [][2]string{jsonCT}, body), want: noFault}
			}
		case 5: // two documents, or trailing garbage
			body = append(bytes.Clone(b), []byte(g.pick([]string{"{}", `,"x":1}`, "\x00", " garbage"}))...)
		case 6: // not an object
			body = []byte(g.pick([]string{"null", "[]", `"x"`, "1", "true", "", " ", "\ufeff{}"}))
		default: // a field missing
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			delete(m, g.pick([]string{"campaign", "provider", "identity_token", "birthdate", "phone", "region", "device_id"}))
			body, _ = json.Marshal(m)
		}
		return hcase{name: fmt.Sprintf("(variant %d)", v), raw: request("POST", "/v1/intents", [][2]string{jsonCT}, body), want: reject}
	}},
	{"field injection", func(g *generator) hcase {
		f, inj := g.pick(fields), g.pick(injections)
		// Half the time the whole value, half appended to the valid one.
		var m map[string]any
		_ = json.Unmarshal(g.base(), &m)
		v := inj
		if s, ok := m[f].(string); ok && g.rng.IntN(2) == 0 {
			v = s + inj
		}
		body := setField(g.base(), f, v)
		want := reject
		if opaque[f] || f == "clinic" && clinicShaped(v) {
			want = noFault
		}
		return hcase{name: "(" + f + ")", raw: request("POST", "/v1/intents", [][2]string{jsonCT}, body), want: want}
	}},
	{"header injection", func(g *generator) hcase {
		r := routes[g.rng.IntN(len(routes))]
		h, inj := g.pick(headersUnderAttack), g.pick(injections)
		var body []byte
		hs := [][2]string{{h, inj}}
		if r.path == "/v1/intents" {
			body = g.base()
			if h != "Content-Type" {
				hs = append(hs, jsonCT)
			}
		}
		return hcase{name: "(" + h + " on " + r.path + ")", raw: request(r.method, g.path(r.path), hs, body), want: noFault, mayClose: true}
	}},
	{"query injection", func(g *generator) hcase {
		r := routes[g.rng.IntN(len(routes))]
		q := g.pick([]string{"campaign", "window", "format", "top", "pending", "limit", "x"})
		return hcase{name: "(" + r.path + ")", raw: request(r.method, g.path(r.path)+"?"+q+"="+urlEscape(g.pick(injections)), nil, nil), want: noFault}
	}},
	{"forged receipt", func(g *generator) hcase {
		// A receipt with "../" in it is a path the mux cleans (a redirect
		// to the cleaned path, on the same server).
		return hcase{raw: request("GET", "/v1/intents/"+g.forgedReceipt(), nil, nil), want: rejectOrRedirect}
	}},
	{"forged idempotency key", func(g *generator) hcase {
		key := g.pick([]string{strings.Repeat("k", 129+g.rng.IntN(4000)), "key\x01", "ключ", "\x7f", "a b\tc"})
		return hcase{raw: request("POST", "/v1/intents", [][2]string{jsonCT, {"Idempotency-Key", key}}, g.base()), want: reject, mayClose: true}
	}},
	{"wrong method", func(g *generator) hcase {
		r := routes[g.rng.IntN(len(routes))]
		m := g.pick([]string{"PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "G@T", "get", "post", strings.Repeat("X", 1+g.rng.IntN(2000))})
		if m == r.method || (m == "POST" && r.method == "POST") {
			m = "DELETE"
		}
		return hcase{raw: request(m, g.path(r.path), nil, nil), want: reject, mayClose: true, rawOnly: true}
	}},
	{"wrong content type", func(g *generator) hcase {
		ct := g.pick([]string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "application/jsonx", "application/xml", "", "*/*", "application/json, text/html"})
		return hcase{raw: request("POST", "/v1/intents", [][2]string{{"Content-Type", ct}}, g.base()), want: reject}
	}},
	{"path traversal", func(g *generator) hcase {
		r := routes[g.rng.IntN(len(routes))]
		tail := g.pick([]string{"etc/passwd", "go.mod", ".env", "windows/win.ini", "proc/self/environ", ".git/config"})
		up := g.pick([]string{"../", "..%2f", "%2e%2e/", "%2e%2e%2f", "..\\", "..%5c", "%252e%252e%252f", "....//", "..;/", "%c0%ae%c0%ae/"})
		p := g.path(r.path)
		if g.rng.IntN(3) == 0 {
			p = "/"
		}
		p = strings.TrimSuffix(p, "/") + "/" + strings.Repeat(up, 1+g.rng.IntN(8)) + tail
		return hcase{raw: request("GET", p, nil, nil), want: rejectOrRedirect, rawOnly: true}
	}},
	{"huge body", func(g *generator) hcase {
		n := intake.MaxBody + 1 + g.rng.IntN(g.maxBody)
		path := g.pick([]string{"/v1/intents", "/v1/sms/reports", "/admin/v1/allocations"})
		return hcase{lazy: func() []byte {
			return request("POST", path, [][2]string{jsonCT}, bytes.Repeat([]byte(`{"a":"`), n/6+1)[:n])
		}, want: reject, mayReset: true}
	}},
	{"huge url", func(g *generator) hcase {
		n := 8<<10 + g.rng.IntN(1<<20)
		return hcase{lazy: func() []byte {
			return request("GET", "/v1/intents/"+strings.Repeat("A", n), nil, nil)
		}, want: reject, mayClose: true, mayReset: true, rawOnly: true}
	}},
	{"header flood", func(g *generator) hcase {
		n, size := 100+g.rng.IntN(20000), 1+g.rng.IntN(200)
		r := routes[g.rng.IntN(len(routes))]
		path := g.path(r.path)
		return hcase{lazy: func() []byte {
			hs := make([][2]string, 0, n)
			for i := range n {
				hs = append(hs, [2]string{"X-Flood-" + strconv.Itoa(i), strings.Repeat("v", size)})
			}
			return request(r.method, path, hs, nil)
		}, want: noFault, mayClose: true, mayReset: true, rawOnly: true}
	}},
	{"truncated body", func(g *generator) hcase {
		b := g.base()
		cut := g.rng.IntN(len(b))
		raw := request("POST", "/v1/intents", [][2]string{jsonCT, {"Content-Length", strconv.Itoa(len(b))}}, b[:cut])
		return hcase{raw: raw, want: reject, halfClose: true, mayClose: true, rawOnly: true}
	}},
	{"framing", func(g *generator) hcase {
		b := g.base()
		var hs [][2]string
		v := g.rng.IntN(6)
		switch v {
		case 0:
			hs = [][2]string{{"Content-Length", strconv.Itoa(len(b))}, {"Transfer-Encoding", "chunked"}}
		case 1:
			hs = [][2]string{{"Content-Length", strconv.Itoa(len(b))}, {"Content-Length", strconv.Itoa(len(b) - 1)}}
		case 2:
			hs = [][2]string{{"Content-Length", "-" + strconv.Itoa(len(b))}}
		case 3:
			hs = [][2]string{{"Transfer-Encoding", g.pick([]string{"chunked, identity", "xchunked", "chunked\x00", " chunked"})}}
		case 4:
			hs = [][2]string{{"Content-Length", strconv.Itoa(len(b)) + g.pick([]string{" 1", "a", ".0", "+0"})}}
		default:
			hs = [][2]string{{"Content-Length", "99999999999999999999"}}
		}
		// RFC 9112 (6.1): a transfer coding the server does not know is
		// answered 501.
		return hcase{name: fmt.Sprintf("(variant %d)", v), raw: request("POST", "/v1/intents", append(hs, jsonCT), b), want: reject, mayClose: true, halfClose: true, rawOnly: true, may501: v == 3}
	}},
	{"garbage", func(g *generator) hcase {
		b := make([]byte, 1+g.rng.IntN(4096))
		for i := range b {
			b[i] = byte(g.rng.IntN(256))
		}
		if g.rng.IntN(2) == 0 {
			b = append([]byte(g.pick([]string{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET /\r\n", "GET / HTTP/9.9\r\n", "\x16\x03\x01\x00\xa5"})), b...)
		}
		return hcase{raw: append(b, "\r\n\r\n"...), want: reject, mayClose: true, halfClose: true, rawOnly: true}
	}},
	{"admin forgery", func(g *generator) hcase {
		r := routes[8+g.rng.IntN(7)]
		auth := g.pick([]string{"", "Bearer ", "Bearer " + g.forgedReceipt(), "Basic YWRtaW46YWRtaW4=", "bearer x", "Bearer " + g.pick(injections)})
		hs := [][2]string{jsonCT}
		if auth != "" {
			hs = append(hs, [2]string{"Authorization", auth})
		}
		var body []byte
		if r.method == "POST" {
			body = []byte(`{"campaign":"` + g.campaign + `","window":"w0","dry_run":false}`)
		}
		return hcase{raw: request(r.method, g.path(r.path)+"?campaign="+g.campaign, hs, body), want: reject, mayClose: true}
	}},
	{"forged delivery report", func(g *generator) hcase {
		body := []byte(`{"message_id":"` + g.forgedReceipt() + `","status":"delivered"}`)
		sig := g.pick([]string{"", "t=1,v1=00", "t=" + strconv.FormatInt(time.Now().Unix(), 10) + ",v1=" + strings.Repeat("ab", 32), "v1=", "t=-1", g.pick(injections)})
		return hcase{raw: request("POST", "/v1/sms/reports", [][2]string{jsonCT, {"X-Sms-Signature", sig}}, body), want: reject, mayClose: true}
	}},
}

// slowloris is a request trickled too slowly to finish before the servers'
// read deadlines.
func slowloris(g *generator, body bool) hcase {
	raw := request("POST", "/v1/intents", [][2]string{jsonCT}, g.base())
	if !body {
		return hcase{name: "slowloris headers", raw: raw, want: reject, trickle: 300 * time.Millisecond, mayClose: true, rawOnly: true}
	}
	return hcase{name: "slowloris body", raw: raw, want: reject, trickle: 300 * time.Millisecond, trickleFrom: bytes.Index(raw, []byte("\r\n\r\n")) + 4, mayClose: true, mayReset: true, rawOnly: true}
}

// generate makes n cases from the seed, every rule in turn so that a small
// corpus still has each.
func generate(seed int64, n, maxBody int, bases [][]byte, campaign string) []hcase {
	g := &generator{rng: rand.New(rand.NewPCG(uint64(seed), 0x686f7374696c65)), bases: bases, campaign: campaign, maxBody: maxBody}
	out := make([]hcase, 0, n)
	for i := range n {
		r := rules[i%len(rules)]
		c := r.make(g)
		c.name = strings.TrimSpace(fmt.Sprintf("%s #%d %s", r.name, i, c.name))
		out = append(out, c)
	}
	return out
}

// handWritten loads testdata/*.http: a request as text (LF becomes CRLF
// in the head), "# want: reject|noFault|redirect" and "# may: close" lines
// first, {{CAMPAIGN}} and {{LEN}} (the body's length) filled in.
func handWritten(tb testing.TB, campaign string) []hcase {
	tb.Helper()
	files, err := filepath.Glob("testdata/*.http")
	require.NoError(tb, err)
	require.NotEmpty(tb, files, "hand-written cases in testdata/*.http")
	var out []hcase
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(tb, err)
		c := hcase{name: filepath.Base(f), want: reject, rawOnly: true}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(l, "# want: noFault"):
				c.want = noFault
			case strings.HasPrefix(l, "# want: redirect"):
				c.want = rejectOrRedirect
			case strings.HasPrefix(l, "# may: close"):
				c.mayClose, c.halfClose = true, true
			case strings.HasPrefix(l, "#"):
			default:
				lines = append(lines, l)
			}
		}
		head, body, _ := strings.Cut(strings.Join(lines, "\n"), "\n\n")
		head = strings.ReplaceAll(head, "{{CAMPAIGN}}", campaign)
		head = strings.ReplaceAll(head, "{{LEN}}", strconv.Itoa(len(body)))
		c.raw = []byte(strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body)
		out = append(out, c)
	}
	return out
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0x736c6f77)) }

// bytes is the request as sent.
func (c hcase) bytes() []byte {
	if c.lazy != nil {
		return c.lazy()
	}
	return c.raw
}
