// Package deploy_test checks the deploy files against the product they
// start: the compose file, the Procfile and the systemd instances run real
// roles with settings that exist, the image runs as non-root with a health
// check where serve listens, the alert rules and the dashboard parse as
// PromQL and name only metrics that a running system serves, and the
// runbook links lead to headings that exist.
package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

func TestMain(m *testing.M) { pgtest.VerifyMain(m, pgtest.IgnoreFastHTTP()...) }

// promql is Prometheus's own PromQL parser (promql/parser): the rules and
// panels must parse as the server that loads them parses them.
var promql = parser.NewParser(parser.Options{})

// rulesFile is deploy/prometheus/alerts.yml, in the shape Prometheus's rule
// files have; KnownFields makes a misspelt key an error, as the server's
// own loader does.
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) rulesFile {
	t.Helper()
	f, err := os.Open(filepath.Join("prometheus", "alerts.yml"))
	require.NoError(t, err)
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var rf rulesFile
	require.NoError(t, dec.Decode(&rf), "alerts.yml")
	return rf
}

// The alerts the brief of the night needs, by what they watch.
var wantAlerts = []string{
	"PreregVerifyFallingBehind", "PreregDedupeFallingBehind", // stage lag
	"PreregIdentityProviderBreakerOpen", "PreregSMSGatewayBreakerOpened",
	"PreregShedRateHigh", "PreregOutboxBacklog", "PreregSMSFailures",
	"PreregHeldBacklog", "PreregNotReady",
}

// promTemplateHeader is what Prometheus puts before every annotation
// template, so that $labels and $value exist.
const promTemplateHeader = `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}`

// promTemplateFuncs are the Prometheus template functions the annotations
// use; a template with any other function fails to parse here.
var promTemplateFuncs = template.FuncMap{
	"humanize": fmt.Sprint, "humanizePercentage": fmt.Sprint, "humanizeDuration": fmt.Sprint,
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	rf := readRules(t)
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		require.NotEmpty(t, g.Name)
		for _, r := range g.Rules {
			t.Run(r.Alert, func(t *testing.T) {
				require.NotEmpty(t, r.Alert, "group %s: a rule without a name", g.Name)
				require.False(t, seen[r.Alert], "alert %s twice", r.Alert)
				seen[r.Alert] = true
				_, err := promql.ParseExpr(r.Expr)
				require.NoError(t, err, "expr of %s", r.Alert)
				if r.For != "" {
					_, err := model.ParseDuration(r.For)
					require.NoError(t, err, "for of %s", r.Alert)
				}
				require.Contains(t, []string{"page", "ticket"}, r.Labels["severity"], "%s: severity page or ticket", r.Alert)
				require.Len(t, r.Annotations, 2, "%s: summary and description", r.Alert)
				for _, k := range []string{"summary", "description"} {
					text := r.Annotations[k]
					require.NotEmpty(t, text, "%s: %s", r.Alert, k)
					_, err := template.New(k).Funcs(promTemplateFuncs).Parse(promTemplateHeader + text)
					require.NoError(t, err, "%s: %s template", r.Alert, k)
				}
				// What to do, not only what happened.
				require.Greater(t, len(strings.Fields(r.Annotations["description"])), 25, "%s: the description says what to do", r.Alert)
			})
		}
	}
	for _, a := range wantAlerts {
		require.True(t, seen[a], "alert %s missing", a)
	}
}

// Every docs/X.md#anchor the deploy files link to is a heading of that
// file: a runbook link that leads nowhere is worse than none.
func TestDocLinksExist(t *testing.T) {
	t.Parallel()
	link := regexp.MustCompile(`docs/([A-Z]+\.md)(#[a-z0-9-]+)?`)
	found := 0
	walkDeploy(t, func(path string, b []byte) {
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			found++
			doc, err := os.ReadFile(filepath.Join("..", "docs", m[1]))
			require.NoError(t, err, "%s links docs/%s", path, m[1])
			if m[2] != "" {
				require.Contains(t, anchors(string(doc)), m[2][1:], "%s links %s", path, m[0])
			}
		}
	})
	require.NotZero(t, found, "the alerts link their runbook sections")
}

// anchors are the GitHub anchors of a Markdown file's headings.
func anchors(doc string) []string {
	var out []string
	drop := regexp.MustCompile("[^a-z0-9 _-]")
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out = append(out, strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-"))
	}
	return out
}

// dashboard is the part of deploy/grafana/prereg.json the checks read.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "prereg.json"))
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// grafanaVars are the dashboard's Grafana variables, replaced by what
// Grafana puts there before the query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s")

func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	d := readDashboard(t)
	require.Equal(t, "prereg", d.UID)
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			queries++
			_, err := promql.ParseExpr(grafanaVars.Replace(tg.Expr))
			require.NoError(t, err, "panel %q", p.Title)
		}
	}
	require.Greater(t, queries, 20)
}

// selector is one metric a rule or panel reads, with the labels it matches.
type selector struct {
	where  string
	name   string
	labels []string
	// equal are the labels matched with =, by the value they must have.
	equal map[string]string
}

// selectors are every vector selector of the alert rules and the
// dashboard's queries.
func selectors(t *testing.T) []selector {
	t.Helper()
	var out []selector
	add := func(where, expr string) {
		e, err := promql.ParseExpr(expr)
		require.NoError(t, err, where)
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			s := selector{where: where, name: vs.Name, equal: map[string]string{}}
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					s.labels = append(s.labels, m.Name)
				}
				if m.Name != model.MetricNameLabel && m.Type == labels.MatchEqual {
					s.equal[m.Name] = m.Value
				}
			}
			require.NotEmpty(t, s.name, "%s: every selector names its metric", where)
			out = append(out, s)
			return nil
		})
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			add("alert "+r.Alert, r.Expr)
		}
	}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			add("panel "+p.Title, grafanaVars.Replace(tg.Expr))
		}
	}
	return out
}

// scrapeConfig is the part of deploy/prometheus/prometheus.yml the checks
// read: the jobs, and the labels a scrape adds to every series.
type scrapeConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
	RuleFiles []string `yaml:"rule_files"`
}

// labelValues are a metric's label names, each with the values its series
// carry (none for a metric known only by its descriptor).
type labelValues map[string]map[string]bool

// outsideMetrics are the series Prometheus makes itself, by the job that
// makes them: up for every scraped target, probe_success from the blackbox
// exporter's probe of /readyz. Every other name must come from prereg.
var outsideMetrics = map[string]string{"up": "prereg", "probe_success": "prereg-readyz"}

// Every metric the alerts and the dashboard read is served by /metrics of
// a running system with every role, after a surge went through intake,
// verify, dedupe, an allocation and notify, so that the labelled series
// exist; every label they match is one those series carry (or one the
// scrape adds), and every value they match with = is one a series has
// (or one of rareValues). A vector whose series appear only on a rare
// event (a shed, a breaker opening) is checked against the registry's
// descriptors.
func TestMetricNamesAreServed(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	require.NoError(t, err)
	var sc scrapeConfig
	require.NoError(t, yaml.Unmarshal(b, &sc))
	jobs := map[string]bool{}
	scrapeLabels := map[string]bool{"job": true, "instance": true}
	for _, j := range sc.ScrapeConfigs {
		jobs[j.JobName] = true
		for _, s := range j.StaticConfigs {
			for k := range s.Labels {
				scrapeLabels[k] = true
			}
		}
	}
	require.Equal(t, []string{"/etc/prometheus/alerts.yml"}, sc.RuleFiles)

	sys, served := runSurge(t)
	declared := describe(t, sys.Registry())

	var fromDescriptors []string
	for _, s := range selectors(t) {
		if job, ok := outsideMetrics[s.name]; ok {
			require.True(t, jobs[job], "%s reads %s, which job %q makes: prometheus.yml has no such job", s.where, s.name, job)
			continue
		}
		family := familyOf(s.name, served)
		lv, ok := served[family]
		if !ok {
			lv, ok = declared[family]
			require.True(t, ok, "%s reads %s: no role of a running system serves it", s.where, s.name)
			fromDescriptors = append(fromDescriptors, s.name)
		}
		for _, l := range s.labels {
			_, carried := lv[l]
			require.True(t, carried || scrapeLabels[l] || (l == "le" && family != s.name),
				"%s matches label %q of %s, which its series do not carry (they have %v)", s.where, l, s.name, slices.Sorted(maps.Keys(lv)))
		}
		for l, v := range s.equal {
			if vs := lv[l]; len(vs) > 0 && !vs[v] && !rareValues[family+"/"+l+"="+v] {
				require.Failf(t, "a label value no series has", "%s matches %s=%q of %s; its series have %v", s.where, l, v, s.name, slices.Sorted(maps.Keys(vs)))
			}
		}
	}
	slices.Sort(fromDescriptors)
	t.Logf("no series yet after the surge, checked against the registry's descriptors: %v", slices.Compact(fromDescriptors))
}

// rareValues are label values the rules match that a short surge without
// faults does not produce, each where the code sets it.
var rareValues = map[string]bool{
	"prereg_dedupe_decisions_total/kind=" + string(prereg.KindHeld): true,
	"prereg_notify_messages_total/outcome=retry":                    true, // notify.Result.outcomeLabel, OutcomeRetry
	"prereg_notify_messages_total/outcome=failed":                   true, // notify.Result.outcomeLabel, OutcomeFailed
}

// familyOf is the metric family a series name belongs to: a histogram's
// _bucket, _sum and _count series belong to the histogram.
func familyOf(name string, served map[string]labelValues) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, isFamily := served[base]; isFamily {
				return base
			}
		}
	}
	return name
}

// descRE reads client_golang's Desc.String: the metric's name and its
// label names.
var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// describe is every metric the registry declares, with its label names,
// whether or not it has a series yet.
func describe(t *testing.T, reg *prometheus.Registry) map[string]labelValues {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	out := map[string]labelValues{}
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		require.NotNil(t, m, "a descriptor this test cannot read: %s", d)
		lv := labelValues{}
		for _, l := range strings.Split(m[2], ",") {
			if name, _, ok := strings.Cut(l, "="); ok {
				lv[name] = nil
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				lv[l] = nil
			}
		}
		out[m[1]] = lv
	}
	require.NotEmpty(t, out)
	return out
}

// runSurge starts every role on an embedded JetStream and a fresh
// database, with the simulated identity providers and SMS gateway, sends a
// small surge through intake, waits for every decision, allocates and
// waits for the SMS; then it scrapes /metrics over HTTP and returns the
// families served, each with the label names its series carry.
func runSurge(t *testing.T) (*app.System, map[string]labelValues) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	db := pgtest.New(t)
	js := streamtest.New(t, stream.Config{})
	log := slog.New(slog.DiscardHandler)

	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{
			"PREREG_HMAC_KEY": "k1:YBxBktAqeaCkuj0NG7KTbm0v3kaPAnCZpoDz6m46LyU=",
			"PREREG_ENC_KEY":  "e1:LenVyg91Q5pH+1LblCmtNMEsL4Gt1zrEbEagstdC7Z0=",
		}[k]
	}, true)
	require.NoError(t, err)

	idps := map[string]*sim.IdP{}
	urls := map[string]string{}
	for _, name := range []string{"pass", "kakao"} {
		idps[name] = sim.NewIdP(name, sim.DemoTokenSecret(name), sim.DemoCISecret)
		srv := httptest.NewServer(idps[name].Handler())
		t.Cleanup(srv.Close)
		urls[name] = srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	secret := []byte("delivery-report-signing-secret-for-the-test")
	gw := sim.NewGateway(sim.GatewayConfig{ReportURL: base + "/v1/sms/reports", ReportSecret: secret, ReportDelay: 10 * time.Millisecond, ReportWorkers: 4})
	gwSrv := httptest.NewServer(gw.Handler())
	t.Cleanup(gwSrv.Close)
	t.Cleanup(gw.Close)

	now := time.Now()
	c, err := sim.DemoCampaign(now, urls, sim.Inventory(sim.InventoryConfig{Seed: 1, Clinics: 20}))
	require.NoError(t, err)
	_, err = (&postgres.CampaignStore{Pool: db.Pool}).Load(ctx, c)
	require.NoError(t, err)

	sys, err := app.New(app.Options{
		Roles: app.AllRoles, Logger: log, Pool: db.Pool, NC: js.NC, Config: cfg,
		Intake: app.IntakeOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Notify: app.NotifyOptions{GatewayURL: gwSrv.URL, WebhookSecret: secret, Rate: 1000, Concurrency: 8},
	})
	require.NoError(t, err)
	require.NoError(t, sys.Start(ctx))
	srv := sys.NewServer(log)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		sys.Stop()
	})

	// The surge: intake answers, verify calls the providers, dedupe decides.
	const n = 300
	pop, err := sim.NewPopulation(1, sim.PeopleFor(n, c, now), c.Cohort)
	require.NoError(t, err)
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: n, Seed: 1, Campaign: c, Providers: idps, Now: now})
	require.NoError(t, err)
	load, err := sim.RunLoad(ctx, surge.Submissions, sim.LoadConfig{Target: base, Connections: 4})
	require.NoError(t, err)
	accepted := map[string]bool{}
	for _, a := range load.Answers {
		if a.Status == http.StatusAccepted {
			accepted[a.Receipt] = true
		}
	}
	require.NotEmpty(t, accepted)
	require.Eventually(t, func() bool {
		var k int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE campaign = $1`, c.ID).Scan(&k)
		return err == nil && k == len(accepted)
	}, 2*time.Minute, 100*time.Millisecond, "every accepted intent decided")

	// Allocation fills the outbox; notify sends, the gateway reports back.
	alloc := scheduler.New(&postgres.AllocationStore{Pool: db.Pool}, scheduler.Config{Logger: log})
	assigned := 0
	for _, w := range c.Windows {
		res, err := alloc.Run(ctx, scheduler.Request{Campaign: c.ID, Window: w.ID, Policy: scheduler.PolicyFCFS})
		require.NoError(t, err, "allocate %s", w.ID)
		assigned += res.Assigned
	}
	require.NotZero(t, assigned)
	require.Eventually(t, func() bool {
		oc, err := sys.NotifyCounts(ctx, c.ID)
		return err == nil && oc.Delivered+oc.Failed == assigned
	}, 2*time.Minute, 100*time.Millisecond, "every SMS sent and reported")

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(bufio.NewReader(resp.Body))
	require.NoError(t, err)
	served := map[string]labelValues{}
	for name, f := range families {
		lv := labelValues{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lv[lp.GetName()] == nil {
					lv[lp.GetName()] = map[string]bool{}
				}
				lv[lp.GetName()][lp.GetValue()] = true
			}
		}
		served[name] = lv
	}
	// The flow reached every stage: their labelled series are there.
	for name, label := range map[string]string{
		"prereg_intake_requests_total": "status", "prereg_verify_outcomes_total": "verdict",
		"prereg_verify_provider_calls_total": "provider", "prereg_dedupe_decisions_total": "kind",
		"prereg_notify_messages_total": "outcome",
	} {
		require.NotEmpty(t, served[name][label], "%s has series with label %s after the surge", name, label)
		require.Positive(t, total(families[name]), name)
	}
	return sys, served
}

// total sums a counter family's series.
func total(f *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// walkDeploy calls fn with every file under deploy/ (this folder) but the
// tests themselves and generated secrets.
func walkDeploy(t *testing.T, fn func(path string, b []byte)) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == "secrets" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(path, b)
		return nil
	})
	require.NoError(t, err)
}

// Every PREREG_* variable the deploy files name is a row of the
// configuration table (config.Settings), a secret's NAME_FILE included: a
// misspelt variable is silently ignored by the process, so it fails here.
func TestEveryVariableIsASetting(t *testing.T) {
	t.Parallel()
	settings := map[string]config.Setting{}
	for _, s := range config.Settings() {
		settings[s.Name] = s
	}
	variable := regexp.MustCompile(`PREREG_[A-Z0-9_]*[A-Z0-9]`)
	found := 0
	walkDeploy(t, func(path string, b []byte) {
		for _, v := range variable.FindAllString(string(b), -1) {
			found++
			if _, ok := settings[v]; ok {
				continue
			}
			base, isFile := strings.CutSuffix(v, "_FILE")
			require.True(t, isFile && settings[base].Secret, "%s names %s, which is not a setting of config.Settings (nor a secret's _FILE)", path, v)
		}
	})
	require.Greater(t, found, 10)
}

// composeFile is the part of deploy/compose.yaml the checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
		DependsOn   any               `yaml:"depends_on"`
		Profiles    []string          `yaml:"profiles"`
		NetworkMode string            `yaml:"network_mode"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

func TestComposeRunsEveryRole(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	var cf composeFile
	require.NoError(t, yaml.Unmarshal(b, &cf), "compose.yaml is YAML (anchors and merge keys included)")

	nats := cf.Services["nats"]
	require.Regexp(t, `^nats:2\.(1[0-9]|[2-9][0-9])`, nats.Image, "NATS >= 2.10")
	require.Contains(t, nats.Command, "--jetstream")
	require.Regexp(t, `^postgres:1[5-9]`, cf.Services["postgres"].Image)
	require.Equal(t, []string{"migrate"}, cf.Services["migrate"].Command)
	require.Equal(t, "campaign", cf.Services["campaign"].Command[0])

	// One service per role process, dedupe in two shard sets.
	roles := map[app.Role]int{}
	var shardSets [][]int
	for name, s := range cf.Services {
		if len(s.Command) == 0 || s.Command[0] != "serve" {
			continue
		}
		args := strings.Join(s.Command, " ")
		m := regexp.MustCompile(`--roles (\S+)`).FindStringSubmatch(args)
		require.NotNil(t, m, "%s: serve --roles", name)
		rs, err := app.ParseRoles(m[1])
		require.NoError(t, err, name)
		for _, r := range rs {
			roles[r]++
		}
		require.Contains(t, args, "--addr :8080", "%s: the image's health check asks :8080", name)
		for _, k := range []string{"DATABASE_URL", "NATS_URL", "PREREG_HMAC_KEY_FILE", "PREREG_ENC_KEY_FILE"} {
			require.NotEmpty(t, s.Environment[k], "%s: %s", name, k)
		}
		// Its environment is valid as the process reads it.
		for k, v := range s.Environment {
			if strings.HasSuffix(k, "_FILE") {
				secret, ok := strings.CutPrefix(v, "/run/secrets/")
				require.True(t, ok, "%s: %s is a compose secret", name, k)
				require.Contains(t, s.Secrets, secret, "%s mounts the secret %s reads", name, k)
				require.Contains(t, cf.Secrets, secret)
			}
		}
		if slices.Contains(rs, app.RoleDedupe) {
			set, err := config.ParseShards(s.Environment["PREREG_DEDUPE_SHARDS"])
			require.NoError(t, err, name)
			shardSets = append(shardSets, set)
		}
		if slices.Contains(rs, app.RoleNotify) {
			require.NotEmpty(t, s.Environment["PREREG_SMS_URL"], "%s: notify needs its gateway", name)
		}
		if slices.Contains(rs, app.RoleAdmin) {
			require.NotEmpty(t, s.Environment["PREREG_ADMIN_TOKENS_FILE"], name)
			require.NotEmpty(t, s.Environment["PREREG_SMS_SECRET_FILE"], name)
		}
	}
	for _, r := range app.AllRoles {
		require.NotZero(t, roles[r], "no service runs role %s", r)
	}
	require.Equal(t, 2, roles[app.RoleDedupe], "dedupe split into two shard sets")
	c, err := campaign.LoadFile(filepath.Join("compose", "trial-campaign.yaml"))
	require.NoError(t, err, "the trial campaign is valid")
	requireShardPartition(t, shardSets, c.Shards)

	// The simulated world.
	for name, args := range map[string]string{
		"sim-idp-pass": "sim idp --name pass", "sim-idp-kakao": "sim idp --name kakao", "sim-sms": "sim sms",
	} {
		require.Contains(t, strings.Join(cf.Services[name].Command, " "), args, name)
	}
	// The trial campaign's providers are where the sims listen for verify.
	for _, p := range c.Providers {
		s := cf.Services["sim-idp-"+p.Name]
		require.Equal(t, "service:verify", s.NetworkMode, "verify reaches %s on its loopback", p.Name)
		require.Contains(t, p.URL, s.Command[len(s.Command)-1], "provider %s's URL is where its sim listens", p.Name)
	}

	// Every secret is a file make-secrets.sh writes.
	script, err := os.ReadFile("make-secrets.sh")
	require.NoError(t, err)
	for name, s := range cf.Secrets {
		require.Equal(t, "./secrets/"+name, s.File, name)
		require.Regexp(t, `(write |/)`+name+`\b`, string(script), "make-secrets.sh writes %s", name)
	}
}

// requireShardPartition checks that dedupe's shard sets cover every shard
// of the campaign exactly once.
func requireShardPartition(t *testing.T, sets [][]int, shards int) {
	t.Helper()
	owner := map[int]int{}
	for i, set := range sets {
		require.NotEmpty(t, set, "a dedupe process with every shard overlaps the others")
		for _, s := range set {
			prev, taken := owner[s]
			require.False(t, taken, "shard %d in sets %d and %d", s, prev, i)
			owner[s] = i
		}
	}
	for s := range shards {
		_, ok := owner[s]
		require.True(t, ok, "shard %d has no dedupe process", s)
	}
	require.Len(t, owner, shards, "no shard beyond the campaign's %d", shards)
}

// The Procfile and the systemd instances run every role, dedupe in two
// disjoint shard sets, with the flags serve has.
func TestProcfileAndSystemdRunEveryRole(t *testing.T) {
	t.Parallel()
	c, err := campaign.LoadFile(filepath.Join("compose", "trial-campaign.yaml"))
	require.NoError(t, err)

	b, err := os.ReadFile("Procfile")
	require.NoError(t, err)
	roles := map[app.Role]int{}
	var shardSets [][]int
	sims := 0
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ": ")
		require.True(t, ok, "Procfile line %q: NAME: COMMAND", line)
		require.Regexp(t, `^[a-z_]+$`, name)
		if strings.Contains(cmd, "./prereg sim ") {
			sims++
			continue
		}
		m := regexp.MustCompile(`^(?:env PREREG_DEDUPE_SHARDS=(\S+) )?\./prereg serve --roles (\S+) --addr (\S+)$`).FindStringSubmatch(cmd)
		require.NotNil(t, m, "Procfile %s: %q", name, cmd)
		rs, err := app.ParseRoles(m[2])
		require.NoError(t, err)
		for _, r := range rs {
			roles[r]++
		}
		if slices.Contains(rs, app.RoleDedupe) {
			set, err := config.ParseShards(m[1])
			require.NoError(t, err)
			shardSets = append(shardSets, set)
		}
	}
	for _, r := range app.AllRoles {
		require.NotZero(t, roles[r], "Procfile runs no %s", r)
	}
	requireShardPartition(t, shardSets, c.Shards)
	require.Equal(t, 3, sims, "two identity providers and the SMS gateway")

	// systemd: one environment file per instance of prereg@.service.
	unit, err := os.ReadFile(filepath.Join("systemd", "prereg@.service"))
	require.NoError(t, err)
	for _, want := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "Restart=always", "LimitNOFILE=1048576", "LoadCredential=hmac_key:", "--roles ${ROLES} --addr ${ADDR}"} {
		require.Contains(t, string(unit), want)
	}
	envs, err := filepath.Glob(filepath.Join("systemd", "env", "*.env"))
	require.NoError(t, err)
	roles = map[app.Role]int{}
	shardSets = nil
	for _, path := range envs {
		vars := readEnvFile(t, path)
		if filepath.Base(path) == "common.env" {
			continue
		}
		rs, err := app.ParseRoles(vars["ROLES"])
		require.NoError(t, err, path)
		require.NotEmpty(t, vars["ADDR"], path)
		for _, r := range rs {
			roles[r]++
		}
		if slices.Contains(rs, app.RoleDedupe) {
			set, err := config.ParseShards(vars["PREREG_DEDUPE_SHARDS"])
			require.NoError(t, err, path)
			shardSets = append(shardSets, set)
		}
	}
	for _, r := range app.AllRoles {
		require.NotZero(t, roles[r], "no systemd instance runs %s", r)
	}
	requireShardPartition(t, shardSets, 16)

	// Each environment, as a process of that instance reads it, is valid.
	common := readEnvFile(t, filepath.Join("systemd", "env", "common.env"))
	for _, path := range envs {
		vars := readEnvFile(t, path)
		_, err := config.FromEnv(func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			return common[k]
		}, false)
		require.NoError(t, err, path)
	}
}

// readEnvFile reads a systemd environment file of KEY=VALUE lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	vars := map[string]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "%s: %q", path, line)
		vars[k] = v
	}
	return vars
}

// The image builds a static binary in one stage and runs it as a numeric
// non-root user in a minimal second, with a health check on /healthz at
// the address its default command listens on.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	df := string(b)
	from := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	require.GreaterOrEqual(t, len(from), 2, "multi-stage")
	require.Regexp(t, `^golang:1\.\d+`, from[0][1], "the build stage")
	require.Regexp(t, `^(gcr\.io/distroless/static|scratch)`, from[len(from)-1][1], "a minimal final image")
	require.Contains(t, df, "CGO_ENABLED=0")
	require.Contains(t, df, "./cmd/prereg")
	user := regexp.MustCompile(`(?m)^USER (\d+)(?::(\d+))?$`).FindStringSubmatch(df)
	require.NotNil(t, user, "USER as a number")
	require.NotEqual(t, "0", user[1], "not root")
	health := regexp.MustCompile(`(?m)CMD \[.*"http://127\.0\.0\.1:(\d+)/healthz"\]`).FindStringSubmatch(df)
	require.NotNil(t, health, "HEALTHCHECK on /healthz")
	require.Regexp(t, `(?m)^CMD \["serve", .*"--addr", ":`+health[1]+`"\]$`, df, "the health check asks where serve listens")
}
