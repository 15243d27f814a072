package hostile_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/world"
)

// lockedBuffer collects what several goroutines write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// teeTransport keeps every answer's headers and body.
type teeTransport struct {
	next http.RoundTripper
	out  *lockedBuffer
}

func (t teeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var b bytes.Buffer
	_ = resp.Header.Write(&b)
	b.Write(body)
	b.WriteByte('\n')
	_, _ = t.out.Write(b.Bytes())
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// needle is one encoding of one personal value.
type needle struct {
	text     string
	kind     string // phone, token, person id
	encoding string
	// digits: only a match between non-digits counts (digits-only forms
	// would otherwise match inside any long number).
	digits bool
}

// needles are the encodings of every personal value the surge generated.
type needles struct {
	byPrefix map[string][]needle
	values   map[string]int // kind → values
	count    int
}

const prefixLen = 8

func (n *needles) add(kind, value string) {
	n.values[kind]++
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, value)
	forms := map[string]string{
		"plain":       value,
		"base64":      strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(value)), "="),
		"base64url":   base64.RawURLEncoding.EncodeToString([]byte(value)),
		"hex":         hex.EncodeToString([]byte(value)),
		"HEX":         strings.ToUpper(hex.EncodeToString([]byte(value))),
		"url-encoded": url.QueryEscape(value),
		"path-escape": url.PathEscape(value),
		"json":        strings.Trim(jsonString(value), `"`),
	}
	if kind == "phone" {
		forms["digits"] = digits
		e164 := "82" + strings.TrimPrefix(digits, "0")
		forms["e164"] = "+" + e164
		forms["e164-digits"] = e164
		forms["e164-url"] = url.QueryEscape("+" + e164)
	}
	seen := map[string]bool{}
	for enc, f := range forms {
		if len(f) < prefixLen || seen[f] {
			continue
		}
		seen[f] = true
		isDigits := strings.Trim(f, "0123456789") == ""
		n.byPrefix[f[:prefixLen]] = append(n.byPrefix[f[:prefixLen]], needle{text: f, kind: kind, encoding: enc, digits: isDigits})
		n.count++
	}
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// search counts the needles found in data, by "kind/encoding".
func (n *needles) search(data []byte, hits map[string]int) {
	for i := 0; i+prefixLen <= len(data); i++ {
		cands, ok := n.byPrefix[string(data[i:i+prefixLen])]
		if !ok {
			continue
		}
		for _, c := range cands {
			end := i + len(c.text)
			if end > len(data) || string(data[i:end]) != c.text {
				continue
			}
			if c.digits && ((i > 0 && isDigit(data[i-1])) || (end < len(data) && isDigit(data[end]))) {
				continue
			}
			hits[c.kind+"/"+c.encoding]++
		}
	}
}

// source is one place personal data must not be.
type source struct {
	name string
	data []byte
}

// A demo surge, then every value that identifies a person searched for,
// in several encodings, in everything the run left behind: the debug
// logs, every stream's and bucket's messages and headers, every row of
// every table, the dedupe report in each format, /metrics and every answer
// the surge got. Tokens may sit in the submitted stream (until verified);
// phones only sealed; nothing else anywhere.
func TestPersonalDataScan(t *testing.T) {
	srv := pgtest.Server(t)
	cfg, err := config.FromEnv(func(string) string { return "" }, false)
	require.NoError(t, err)
	submissions := 2000
	if *full {
		submissions = 10000
	}
	logs, answers := &lockedBuffer{}, &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var sources []source
	var vals *needles
	var surge *sim.Surge
	sum, err := world.Demo(ctx, world.DemoOptions{
		Config: cfg, DatabaseURL: srv.URL, Logger: log, Submissions: submissions, Seed: 11, Connections: 16,
		Client: &http.Client{Transport: teeTransport{next: tr, out: answers}},
		Inspect: func(ctx context.Context, w *world.World, s *sim.Surge) error {
			surge, vals = s, personalValues(s)
			var err error
			sources, err = gather(ctx, w)
			return err
		},
	})
	require.NoError(t, err)
	require.True(t, sum.InvariantOK, "violations: %v", sum.Violations)
	sources = append(sources, source{"logs (debug)", logs.Bytes()}, source{"answers to the surge", answers.Bytes()})

	// The control: the surge's own requests carry every value in plain
	// text, so a scan that finds nothing there is blind.
	var requests bytes.Buffer
	for _, sub := range surge.Submissions {
		requests.Write(sub.Body)
	}
	control := map[string]int{}
	vals.search(requests.Bytes(), control)
	require.Positive(t, control["phone/plain"], "the scan finds the phones in the surge's requests")
	require.Positive(t, control["token/plain"], "the scan finds the tokens in the surge's requests")

	var total int
	allowed, found := map[string]int{}, map[string]int{}
	for _, src := range sources {
		total += len(src.data)
		hits := map[string]int{}
		vals.search(src.data, hits)
		for k, v := range hits {
			if src.name == "stream "+stream.Submitted && strings.HasPrefix(k, "token/") {
				allowed[src.name+": "+k] += v
				continue
			}
			found[src.name+": "+k] += v
		}
	}
	names := make([]string, len(sources))
	for i, src := range sources {
		names[i] = fmt.Sprintf("%s (%d B)", src.name, len(src.data))
	}
	t.Logf("personal-data scan: %d submissions; %d values (%v) as %d encoded forms; control hits in the requests: %d; searched %d bytes of %d sources: %s; hits the design allows (tokens in the submitted stream, until verified): %v; other hits: %v",
		sum.Submitted, vals.values["phone"]+vals.values["token"]+vals.values["person id"], vals.values, vals.count,
		control["phone/plain"]+control["token/plain"], total, len(sources), strings.Join(names, ", "), sortedKeys(allowed), sortedKeys(found))
	require.Empty(t, found, "no personal value anywhere but where the design allows it")
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// personalValues are the phones, identity tokens and person ids (the
// provider's account id and the CI it reveals) of the surge.
func personalValues(s *sim.Surge) *needles {
	n := &needles{byPrefix: map[string][]needle{}, values: map[string]int{}}
	ci := sim.NewIdP("scan", nil, sim.DemoCISecret)
	for _, p := range s.Population.People {
		n.add("phone", p.Phone)
		n.add("person id", p.ID)
		n.add("person id", ci.PersonID(p.ID))
	}
	seen := map[string]bool{}
	for _, p := range s.Population.People {
		seen[p.Phone] = true
	}
	for _, sub := range s.Submissions {
		var in struct {
			Token string `json:"identity_token"`
			Phone string `json:"phone"`
		}
		if json.Unmarshal(sub.Body, &in) != nil {
			continue // a malformed one: what it holds is not a person's
		}
		for kind, v := range map[string]string{"token": in.Token, "phone": in.Phone} {
			if v != "" && !seen[v] {
				seen[v] = true
				n.add(kind, v)
			}
		}
	}
	return n
}

// gather reads everything the run left behind in the world.
func gather(ctx context.Context, w *world.World) ([]source, error) {
	var out []source
	// Every stream, KV buckets and object stores included.
	names := w.JS.StreamNames(ctx)
	for name := range names.Name() {
		st, err := w.JS.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		var b bytes.Buffer
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("stream %s message %d: %w", name, seq, err)
			}
			b.WriteString(m.Subject + "\n")
			_ = http.Header(m.Header).Write(&b)
			b.Write(m.Data)
			b.WriteByte('\n')
		}
		out = append(out, source{"stream " + name, b.Bytes()})
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}

	// Every row of every table, as text.
	rows, err := w.Pool.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var schema, table string
		err := r.Scan(&schema, &table)
		return pgx.Identifier{schema, table}, err
	})
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	for _, tbl := range tables {
		rows, err := w.Pool.Query(ctx, `SELECT t::text FROM `+tbl.Sanitize()+` t`)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", tbl.Sanitize(), err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", tbl.Sanitize(), err)
		}
		out = append(out, source{"table " + tbl.Sanitize(), []byte(strings.Join(lines, "\n"))})
	}

	// The dedupe report in every format, the metrics.
	var auditor string
	for _, tok := range w.Config.AdminTokens.Tokens() {
		if role, tk, _ := strings.Cut(tok, ":"); role == string(config.RoleAuditor) {
			auditor = tk
		}
	}
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.BaseURL+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+auditor)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		return b, err
	}
	for _, format := range []string{"text", "json", "csv", "html"} {
		paths := []string{"/admin/v1/reports/dedupe?campaign=" + w.Campaign.ID + "&format=" + format}
		for _, win := range w.Campaign.Windows {
			paths = append(paths, paths[0]+"&window="+win.ID)
		}
		var b bytes.Buffer
		for _, p := range paths {
			body, err := get(p)
			if err != nil {
				return nil, err
			}
			b.Write(body)
		}
		out = append(out, source{"report " + format, b.Bytes()})
	}
	// The receipt view of submissions of every kind, in both formats.
	rows, err = w.Pool.Query(ctx, `SELECT receipt FROM (
		SELECT receipt, row_number() OVER (PARTITION BY kind, reason ORDER BY receipt) AS n FROM decisions) d WHERE n <= 20`)
	if err != nil {
		return nil, fmt.Errorf("receipts: %w", err)
	}
	receipts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("receipts: %w", err)
	}
	var views bytes.Buffer
	for _, r := range receipts {
		for _, q := range []string{"", "?format=html"} {
			body, err := get("/admin/v1/receipts/" + r + q)
			if err != nil {
				return nil, err
			}
			views.Write(body)
		}
	}
	out = append(out, source{"receipt views", views.Bytes()})
	metrics, err := get("/metrics")
	if err != nil {
		return nil, err
	}
	return append(out, source{"/metrics", metrics}), nil
}
