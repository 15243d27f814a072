package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
)

// Suite is what every case shares: the binaries, the private PostgreSQL
// cluster (a database per case) and the table being filled.
type Suite struct {
	Root string
	Bin  Binaries
	PG   *postgres.Cluster
	Long bool
	// Env is configuration every prereg process of every case gets.
	Env     []string
	pgDir   string
	mu      sync.Mutex
	rows    []Row
	started time.Time
}

// NewSuite builds the binaries (kept in the user's cache, BinaryDir) and
// starts a private PostgreSQL cluster; Close stops it.
func NewSuite(ctx context.Context, long bool) (*Suite, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	s := &Suite{Root: root, Long: long, started: time.Now()}
	// The PostgreSQL cluster starts while the binaries build.
	pgDir, err := os.MkdirTemp("", "prereg-chaos-pg-")
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	pgDone := make(chan error, 1)
	go func() {
		// The cluster's folder is the suite's own, removed at Close.
		var err error
		s.PG, err = postgres.StartCluster(ctx, postgres.ClusterConfig{Dir: pgDir, Settings: []string{"fsync = on"}})
		pgDone <- err
	}()
	dir, err := BinaryDir(root)
	if err == nil {
		s.Bin, err = BuildLocked(ctx, root, dir)
	}
	if pgErr := <-pgDone; pgErr != nil || err != nil {
		if pgErr == nil {
			_ = s.PG.Stop()
		}
		os.RemoveAll(pgDir)
		return nil, errors.Join(err, pgErr)
	}
	s.pgDir = pgDir
	return s, nil
}

// Close stops the cluster and removes its folder; the binaries stay in the
// cache for the next run.
func (s *Suite) Close() {
	_ = s.PG.Stop()
	os.RemoveAll(s.pgDir)
}

// Add records a case's row.
func (s *Suite) Add(r Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, r)
}

// Rows are the rows recorded so far, in the cases' order (their names
// start with their number), whatever order they ended in.
func (s *Suite) Rows() []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := slices.Clone(s.rows)
	slices.SortStableFunc(rows, func(a, b Row) int { return strings.Compare(a.Case, b.Case) })
	return rows
}

// RoleSpec is one `prereg serve` process of a stack.
type RoleSpec struct {
	Name  string   // process name, e.g. "dedupe-a"
	Roles string   // --roles
	Env   []string // extra environment, e.g. PREREG_DEDUPE_SHARDS=0-7
}

// Options configure a Stack.
type Options struct {
	// Case names the case (and its database).
	Case string
	// NATSNodes is 1 (deploy/nats/single.conf) or 3 (deploy/nats/cluster.conf).
	NATSNodes int
	// Layout is the prereg processes; one per role when empty.
	Layout []RoleSpec
	// SMSArgs are extra flags of `prereg sim sms` (e.g. --rate 20).
	SMSArgs []string
	// Env is extra environment for every prereg process.
	Env []string
	// OwnPostgres gives the stack a PostgreSQL cluster of its own (Stack.PG)
	// instead of a database on the suite's: a case that stops PostgreSQL
	// stops only its own while other cases run beside it.
	OwnPostgres bool
}

// DefaultLayout is one process per role.
var DefaultLayout = []RoleSpec{
	{Name: "intake", Roles: "intake"},
	{Name: "verify", Roles: "verify"},
	{Name: "dedupe", Roles: "dedupe"},
	{Name: "notify", Roles: "notify"},
	{Name: "admin", Roles: "admin"},
}

// Stack is prereg running as separate processes for one case.
type Stack struct {
	tb    testing.TB
	suite *Suite
	opts  Options
	dir   string
	log   func(format string, args ...any)

	// PG is the cluster the stack's database is on: the suite's, or its
	// own with Options.OwnPostgres.
	PG       *postgres.Cluster
	DBName   string
	DBURL    string
	NATS     []*Proc
	NATSURL  string // every node, comma-separated
	IdPs     map[string]*Proc
	IdPURLs  map[string]string
	SMS      *Proc
	SMSURL   string
	Roles    map[string]*Proc
	RoleAddr map[string]string // role process name → base URL
	Campaign string
	campFile string
	env      []string

	// AllowPending is how many messages may stay unacknowledged when the
	// pipeline counts as settled: the poison case's own, whose fate it
	// reports apart.
	AllowPending int

	nc    *nats.Conn
	js    jetstream.JetStream
	db    *pgxpool.Pool
	ownPG bool
}

// NewStack starts a stack for one case and registers its stop with
// tb.Cleanup. It fails the test when something does not come up.
func NewStack(tb testing.TB, suite *Suite, o Options) *Stack {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if o.NATSNodes == 0 {
		o.NATSNodes = 1
	}
	if len(o.Layout) == 0 {
		o.Layout = DefaultLayout
	}
	s := &Stack{
		tb: tb, suite: suite, opts: o, dir: tb.TempDir(), log: tb.Logf,
		IdPs: map[string]*Proc{}, IdPURLs: map[string]string{},
		Roles: map[string]*Proc{}, RoleAddr: map[string]string{},
	}
	tb.Cleanup(s.stop)
	if err := s.start(ctx); err != nil {
		s.dumpLogs()
		tb.Fatalf("chaos %s: start: %v", o.Case, err)
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// baseEnv is the process environment without anything prereg reads, so
// the developer's own settings do not leak into the processes.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PREREG_") || strings.HasPrefix(k, "NATS_") || k == "DATABASE_URL" || k == "TEST_DATABASE_URL" || k == "GOGC" || k == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (s *Stack) start(ctx context.Context) error {
	// The database, on the suite's private cluster or the stack's own.
	s.PG = s.suite.PG
	if s.opts.OwnPostgres {
		port, err := freePort()
		if err != nil {
			return err
		}
		// A folder of /tmp, as the suite's: PostgreSQL runs as an
		// unprivileged user when the tests run as root, and the test's
		// own folders are closed to it. Stop removes it.
		if s.PG, err = postgres.StartCluster(ctx, postgres.ClusterConfig{Port: port, Settings: []string{"fsync = on"}}); err != nil {
			return err
		}
		s.ownPG = true
	}
	s.DBName = "chaos_" + strings.ReplaceAll(s.opts.Case, "-", "_") + "_" + randomHex(3)
	if err := postgres.CreateDatabase(ctx, s.PG.URL(), s.DBName); err != nil {
		return err
	}
	s.DBURL = postgres.WithDatabase(s.PG.URL(), s.DBName)

	if err := s.startNATS(ctx); err != nil {
		return err
	}

	smsSecret := randomHex(16)
	s.env = append(baseEnv(),
		"DATABASE_URL="+s.DBURL,
		"NATS_URL="+s.NATSURL,
		"PREREG_HMAC_KEY=k1:"+randomKey(),
		"PREREG_ENC_KEY=k1:"+randomKey(),
		"PREREG_ADMIN_TOKENS=operator:"+randomHex(16)+",auditor:"+randomHex(16),
		"PREREG_SMS_SECRET="+smsSecret,
		// The load generator sends each household's address in
		// X-Forwarded-For from loopback, as in the demo.
		"PREREG_TRUSTED_PROXIES=127.0.0.0/8",
		"PREREG_SMS_RATE=500",
		"PREREG_SMS_CONCURRENCY=16",
	)
	s.env = append(s.env, s.suite.Env...)
	s.env = append(s.env, s.opts.Env...)

	// The simulated identity providers and SMS gateway.
	for _, name := range []string{"pass", "kakao"} {
		port, err := freePort()
		if err != nil {
			return err
		}
		u := fmt.Sprintf("http://127.0.0.1:%d", port)
		p := NewProc("idp-"+name, s.suite.Bin.Prereg, []string{"sim", "idp", "--name", name, "--addr", fmt.Sprintf("127.0.0.1:%d", port)}, s.env, s.dir)
		p.Health = u + "/v1/faults"
		s.IdPs[name], s.IdPURLs[name] = p, u
	}
	// The admin role takes the delivery reports: its address is known
	// before it starts.
	for _, r := range s.opts.Layout {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.RoleAddr[r.Name] = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	smsPort, err := freePort()
	if err != nil {
		return err
	}
	s.SMSURL = fmt.Sprintf("http://127.0.0.1:%d", smsPort)
	smsArgs := []string{"sim", "sms", "--addr", fmt.Sprintf("127.0.0.1:%d", smsPort)}
	for _, r := range s.opts.Layout {
		if strings.Contains(r.Roles, "admin") {
			smsArgs = append(smsArgs, "--report-url", s.RoleAddr[r.Name]+"/v1/sms/reports")
			break
		}
	}
	smsArgs = append(smsArgs, s.opts.SMSArgs...)
	s.SMS = NewProc("sms", s.suite.Bin.Prereg, smsArgs, s.env, s.dir)
	s.SMS.Health = s.SMSURL + "/v1/stats"
	s.env = append(s.env, "PREREG_SMS_URL="+s.SMSURL)
	sims := []*Proc{s.SMS, s.IdPs["pass"], s.IdPs["kakao"]}
	if err := startAll(ctx, sims); err != nil {
		return err
	}

	// The campaign: the demo's, with its providers at the simulated ones,
	// written as the YAML file an operator loads, and the same file for
	// the load generator.
	if err := s.writeCampaign(); err != nil {
		return err
	}
	if _, err := s.Prereg(ctx, "migrate"); err != nil {
		return err
	}
	if _, err := s.Prereg(ctx, "campaign", "load", s.campFile); err != nil {
		return err
	}

	// The roles, all at once.
	var procs []*Proc
	for _, r := range s.opts.Layout {
		addr := strings.TrimPrefix(s.RoleAddr[r.Name], "http://")
		p := NewProc(r.Name, s.suite.Bin.Prereg, []string{"serve", "--roles", r.Roles, "--addr", addr, "--shutdown-grace", "5s"}, append(slices.Clone(s.env), r.Env...), s.dir)
		p.Health = s.RoleAddr[r.Name] + "/readyz"
		s.Roles[r.Name] = p
		procs = append(procs, p)
	}
	if err := startAll(ctx, procs); err != nil {
		return err
	}

	// The suite's own view of JetStream and PostgreSQL.
	nc, err := nats.Connect(s.NATSURL, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("chaos: connect nats: %w", err)
	}
	s.nc = nc
	if s.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("chaos: jetstream: %w", err)
	}
	return nil
}

// startAll starts processes concurrently and waits until each is ready.
func startAll(ctx context.Context, procs []*Proc) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Start(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Stack) startNATS(ctx context.Context) error {
	conf := filepath.Join(s.suite.Root, "deploy", "nats", "single.conf")
	if s.opts.NATSNodes > 1 {
		conf = filepath.Join(s.suite.Root, "deploy", "nats", "cluster.conf")
	}
	n := s.opts.NATSNodes
	type ports struct{ client, monitor, cluster int }
	ps := make([]ports, n)
	for i := range ps {
		var err error
		if ps[i].client, err = freePort(); err != nil {
			return err
		}
		if ps[i].monitor, err = freePort(); err != nil {
			return err
		}
		if ps[i].cluster, err = freePort(); err != nil {
			return err
		}
	}
	var urls []string
	for i, p := range ps {
		name := fmt.Sprintf("nats-%d", i+1)
		store := filepath.Join(s.dir, name)
		env := append(baseEnv(),
			"NATS_NAME="+name, "NATS_HOST=127.0.0.1",
			"NATS_PORT="+strconv.Itoa(p.client), "NATS_MONITOR_PORT="+strconv.Itoa(p.monitor),
			"NATS_CLUSTER_PORT="+strconv.Itoa(p.cluster), "NATS_STORE_DIR="+store)
		for j := range 3 {
			// A single node's file has no routes; three unused values
			// are harmless there.
			env = append(env, fmt.Sprintf("NATS_ROUTE_%d=nats-route://127.0.0.1:%d", j+1, ps[j%n].cluster))
		}
		proc := NewProc(name, s.suite.Bin.NATSServer, []string{"-c", conf}, env, s.dir)
		proc.Health = fmt.Sprintf("http://127.0.0.1:%d/healthz", p.monitor)
		s.NATS = append(s.NATS, proc)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p.client))
	}
	s.NATSURL = strings.Join(urls, ",")
	return startAll(ctx, s.NATS)
}

// writeCampaign writes the demo campaign with the simulated providers'
// URLs and a clinic inventory as YAML.
func (s *Stack) writeCampaign() error {
	clinics := sim.Inventory(sim.InventoryConfig{Seed: 1, Clinics: 300})
	c, err := sim.DemoCampaign(time.Now(), s.IdPURLs, clinics)
	if err != nil {
		return err
	}
	f := c.Spec
	f.Clinics = f.Clinics[:0]
	for _, cl := range c.Clinics {
		f.Clinics = append(f.Clinics, campaign.FileClinic(cl))
	}
	data, err := yaml.Marshal(f)
	if err != nil {
		return fmt.Errorf("chaos: campaign: %w", err)
	}
	s.Campaign = c.ID
	s.campFile = filepath.Join(s.dir, "campaign.yaml")
	if err := os.WriteFile(s.campFile, data, 0o644); err != nil {
		return fmt.Errorf("chaos: campaign: %w", err)
	}
	return nil
}

// ExitError is a prereg command that exited with a code other than 0.
type ExitError struct {
	Args   []string
	Code   int
	Output string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("prereg %s: exit %d\n%s", strings.Join(e.Args, " "), e.Code, e.Output)
}

// Prereg runs one prereg command with the stack's environment and returns
// its standard output; a non-zero exit is an *ExitError.
func (s *Stack) Prereg(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.suite.Bin.Prereg, args...)
	cmd.Env = s.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), &ExitError{Args: args, Code: ee.ExitCode(), Output: lastLines(out.String()+errOut.String(), 30)}
	}
	if err != nil {
		return out.String(), fmt.Errorf("prereg %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Restart kills a role process (SIGKILL) and starts it again after
// pause, waiting until it is ready.
func (s *Stack) Restart(ctx context.Context, p *Proc, pause time.Duration) error {
	p.Kill()
	time.Sleep(pause)
	return p.Start(ctx)
}

// IntakeURL is the base URL of the named intake process.
func (s *Stack) IntakeURL(name string) string { return s.RoleAddr[name] }

// DB is a pool on the case's database (opened on first use).
func (s *Stack) DB(ctx context.Context) (*pgxpool.Pool, error) {
	if s.db != nil {
		return s.db, nil
	}
	pool, err := postgres.Open(ctx, s.DBURL)
	if err != nil {
		return nil, err
	}
	s.db = pool
	return pool, nil
}

// JS is the suite's own JetStream client.
func (s *Stack) JS() jetstream.JetStream { return s.js }

func (s *Stack) stop() {
	var all []*Proc
	for _, p := range s.Roles {
		all = append(all, p)
	}
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Go(func() { p.Stop(5 * time.Second) })
	}
	wg.Wait()
	for _, p := range append([]*Proc{s.SMS}, s.IdPs["pass"], s.IdPs["kakao"]) {
		if p != nil {
			p.Stop(3 * time.Second)
		}
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
	for _, p := range s.NATS {
		p.Stop(5 * time.Second)
	}
	if s.tb.Failed() {
		s.dumpLogs()
	}
	if s.ownPG {
		_ = s.PG.Stop()
		return
	}
	if s.PG == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = postgres.DropDatabase(ctx, s.PG.URL(), s.DBName)
}

// dumpLogs prints the end of every process's log (logs hold no personal
// data: the house rule for every log line).
func (s *Stack) dumpLogs() {
	var all []*Proc
	all = append(all, s.NATS...)
	for _, r := range s.opts.Layout {
		if p := s.Roles[r.Name]; p != nil {
			all = append(all, p)
		}
	}
	if s.SMS != nil {
		all = append(all, s.SMS)
	}
	for _, p := range all {
		s.log("--- %s (last lines of %s)\n%s", p.Name, p.LogPath(), p.Tail(12))
	}
}

// Load is a `prereg loadgen` run in progress.
type Load struct {
	Seed      int
	receipts  string
	done      chan struct{}
	report    LoadReport
	err       error
	startedAt time.Time
}

// LoadReport is what the load generator printed (its --format json).
type LoadReport struct {
	Submitted int            `json:"submitted"`
	Sent      int            `json:"sent"`
	Attempts  int            `json:"attempts"`
	Errors    int            `json:"errors"`
	Statuses  map[string]int `json:"statuses"`
	Accepted  int            `json:"accepted"`
	Seconds   float64        `json:"seconds"`
	Mix       map[string]int `json:"mix"`
}

// StartLoad starts a surge of n submissions at rate per second against
// the named intake process, recording its receipts.
func (s *Stack) StartLoad(intake string, seed, n int, rate float64) *Load {
	l := &Load{Seed: seed, receipts: filepath.Join(s.dir, fmt.Sprintf("receipts-%d.jsonl", seed)), done: make(chan struct{}), startedAt: time.Now()}
	go func() {
		defer close(l.done)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		out, err := s.Prereg(ctx, "loadgen", "--target", s.IntakeURL(intake), "--campaign", s.campFile,
			"--submissions", strconv.Itoa(n), "--seed", strconv.Itoa(seed), "--rate", strconv.FormatFloat(rate, 'f', -1, 64),
			"--receipts", l.receipts, "--format", "json")
		if err != nil {
			l.err = err
			return
		}
		l.err = json.Unmarshal([]byte(out), &l.report)
	}()
	return l
}

// Wait waits for the surge to end and returns its report and receipts.
func (l *Load) Wait() (LoadReport, []string, error) {
	<-l.done
	if l.err != nil {
		return l.report, nil, l.err
	}
	f, err := os.Open(l.receipts)
	if err != nil {
		return l.report, nil, fmt.Errorf("chaos: receipts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line sim.ReceiptLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return l.report, nil, fmt.Errorf("chaos: receipts: %w", err)
		}
		out = append(out, line.Receipt)
	}
	return l.report, out, sc.Err()
}

// Done is closed when the surge has ended.
func (l *Load) Done() <-chan struct{} { return l.done }

// Pending is the number of messages the streams' consumers have not yet
// acknowledged (pending plus in flight), summed over both streams.
func (s *Stack) Pending(ctx context.Context) (int, error) {
	total := 0
	for _, name := range []string{stream.Submitted, stream.Verified} {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("chaos: stream %s: %w", name, err)
		}
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			total += int(ci.NumPending) + ci.NumAckPending
		}
		if err := lister.Err(); err != nil {
			return 0, fmt.Errorf("chaos: consumers of %s: %w", name, err)
		}
	}
	return total, nil
}

// Decided returns which of the receipts have a decision in the database,
// and how many receipts of the campaign were decided more than once.
func (s *Stack) Decided(ctx context.Context, receipts []string) (decided map[string]bool, twice int, err error) {
	pool, err := s.DB(ctx)
	if err != nil {
		return nil, 0, err
	}
	rows, err := pool.Query(ctx, `SELECT receipt, count(*) FROM decisions WHERE campaign = $1 AND receipt = ANY($2) GROUP BY receipt`, s.Campaign, receipts)
	if err != nil {
		return nil, 0, fmt.Errorf("chaos: decisions: %w", err)
	}
	defer rows.Close()
	decided = map[string]bool{}
	for rows.Next() {
		var r string
		var n int
		if err := rows.Scan(&r, &n); err != nil {
			return nil, 0, fmt.Errorf("chaos: decisions: %w", err)
		}
		decided[r] = true
		if n > 1 {
			twice++
		}
	}
	return decided, twice, rows.Err()
}

// Settle waits until every receipt has a decision and the consumers have
// no more than AllowPending messages pending, or timeout. It gives up
// early when nothing is left in flight and no decision came for quietFor:
// what is undecided then was dropped, and waiting longer will not change
// it. It returns how many receipts were decided.
func (s *Stack) Settle(receipts []string, timeout time.Duration) (int, error) {
	const quietFor = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last, lastChange := -1, time.Now()
	for {
		decided, _, err := s.Decided(ctx, receipts)
		if err == nil {
			if len(decided) != last {
				last, lastChange = len(decided), time.Now()
			}
			n, perr := s.Pending(ctx)
			idle := perr == nil && n <= s.AllowPending
			switch {
			case last == len(receipts) && idle:
				return last, nil
			case idle && time.Since(lastChange) > quietFor:
				return last, fmt.Errorf("chaos: %d of %d receipts decided, nothing in flight for %s", last, len(receipts), quietFor)
			}
		}
		select {
		case <-ctx.Done():
			return max(last, 0), fmt.Errorf("chaos: %d of %d receipts decided after %s", max(last, 0), len(receipts), timeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Allocate commits the open window's lottery seed, as an operator does
// before the window closes, and runs its allocation.
func (s *Stack) Allocate(ctx context.Context) error {
	if _, err := s.Prereg(ctx, "lottery", "commit", "--campaign", s.Campaign, "--window", "open"); err != nil {
		return err
	}
	_, err := s.Prereg(ctx, "allocate", "--campaign", s.Campaign, "--window", "open", "--format", "json", "--wait")
	return err
}

// SMSStats are the simulated gateway's counts (its GET /v1/stats).
func (s *Stack) SMSStats(ctx context.Context) (sim.GatewayStats, error) {
	var st sim.GatewayStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.SMSURL+"/v1/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("chaos: sms stats: %w", err)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// SetSMSFaults changes the simulated gateway's faults.
func (s *Stack) SetSMSFaults(ctx context.Context, f sim.SMSFaults) error {
	return putJSON(ctx, s.SMSURL+"/v1/faults", f)
}

// SetIdPFaults changes the faults of every simulated identity provider.
func (s *Stack) SetIdPFaults(ctx context.Context, f sim.Faults) error {
	for _, u := range s.IdPURLs {
		if err := putJSON(ctx, u+"/v1/faults", f); err != nil {
			return err
		}
	}
	return nil
}

func putJSON(ctx context.Context, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("chaos: put %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chaos: put %s: %s", url, resp.Status)
	}
	return nil
}

// Outbox counts the campaign's appointments and its outbox rows not yet
// accepted by the gateway.
func (s *Stack) Outbox(ctx context.Context) (appointments, unsent int, err error) {
	pool, err := s.DB(ctx)
	if err != nil {
		return 0, 0, err
	}
	err = pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM appointments WHERE campaign = $1 AND status = 'scheduled'),
		(SELECT count(*) FROM outbox WHERE campaign = $1 AND state IN ('pending', 'failed'))`, s.Campaign).Scan(&appointments, &unsent)
	if err != nil {
		return 0, 0, fmt.Errorf("chaos: outbox: %w", err)
	}
	return appointments, unsent, nil
}

// WaitSMS waits until every appointment's SMS reached a handset and the
// outbox has nothing left to send, or timeout.
func (s *Stack) WaitSMS(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var appts, unsent, delivered int
	for {
		var err error
		appts, unsent, err = s.Outbox(ctx)
		if err == nil {
			st, serr := s.SMSStats(ctx)
			if serr == nil {
				delivered = st.HandsetDeliveries
				if unsent == 0 && delivered >= appts {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: SMS not drained after %s: %d appointments, %d at the handsets, %d outbox rows unsent", timeout, appts, delivered, unsent)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// CheckReport is the part of `prereg check --format json` the suite reads.
type CheckReport struct {
	OK         bool `json:"ok"`
	Invariants []struct {
		ID         int      `json:"id"`
		Name       string   `json:"name"`
		OK         bool     `json:"ok"`
		Violations int      `json:"violations"`
		Examples   []string `json:"examples"`
	} `json:"invariants"`
}

// Check runs `prereg check --settled` and returns the failed invariants.
func (s *Stack) Check(ctx context.Context) ([]string, error) {
	out, err := s.Prereg(ctx, "check", "--campaign", s.Campaign, "--settled", "--format", "json")
	var ee *ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Code == 3) {
		return nil, err
	}
	var rep CheckReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		return nil, fmt.Errorf("chaos: check output: %w", jerr)
	}
	var failed []string
	for _, inv := range rep.Invariants {
		if !inv.OK {
			failed = append(failed, fmt.Sprintf("invariant %d %s: %d violations %v", inv.ID, inv.Name, inv.Violations, inv.Examples))
		}
	}
	return failed, nil
}

// Duplicates counts persons with more than one registration and
// registrations with more than one live appointment.
func (s *Stack) Duplicates(ctx context.Context) (registrations, appointments int, err error) {
	pool, err := s.DB(ctx)
	if err != nil {
		return 0, 0, err
	}
	err = pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM (SELECT identity_key FROM registrations WHERE campaign = $1 GROUP BY identity_key HAVING count(*) > 1) d),
		(SELECT count(*) FROM (SELECT registration_id FROM appointments WHERE campaign = $1 AND status = 'scheduled' GROUP BY registration_id HAVING count(*) > 1) a)`,
		s.Campaign).Scan(&registrations, &appointments)
	if err != nil {
		return 0, 0, fmt.Errorf("chaos: duplicates: %w", err)
	}
	return registrations, appointments, nil
}

// DecisionCounts counts the campaign's decisions by kind and reason
// ("rejected/invalid_token").
func (s *Stack) DecisionCounts(ctx context.Context) (map[string]int, error) {
	pool, err := s.DB(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT kind || CASE WHEN reason = '' THEN '' ELSE '/' || reason END, count(*) FROM decisions WHERE campaign = $1 GROUP BY 1`, s.Campaign)
	if err != nil {
		return nil, fmt.Errorf("chaos: decision counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}
