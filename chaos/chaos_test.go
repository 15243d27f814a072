package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
)

// scale sizes the cases: short in `go test ./...`, long in `task chaos`.
type scale struct {
	Submissions int
	Rate        float64 // submissions per second
	KillEvery   time.Duration
	PGOutage    time.Duration
	NodeDown    time.Duration
	Phase       time.Duration // each provider fault
	To          Timeouts
	// Env is configuration every prereg process of the run gets.
	Env []string
}

var (
	short = scale{Submissions: 160, Rate: 40, KillEvery: time.Second, PGOutage: 6 * time.Second,
		NodeDown: 2 * time.Second, Phase: 2 * time.Second, To: Timeouts{Settle: 90 * time.Second, SMS: 30 * time.Second},
		// A killed or cut-off worker's messages come back after its
		// consumer's AckWait, and intents that failed while a provider
		// misbehaved after verify's back-off: the short run shortens both
		// through configuration, as an operator may, so that they cost
		// seconds rather than verify's 30 and dedupe's 60.
		Env: []string{"PREREG_VERIFY_ACK_WAIT=8s", "PREREG_DEDUPE_ACK_WAIT=5s", "PREREG_VERIFY_BACKOFF_CAP=3s"}}
	// long: the PostgreSQL outage outlasts every retry budget (dedupe's
	// NAK back-off over its MaxDeliver adds up to about four minutes).
	long = scale{Submissions: 6000, Rate: 60, KillEvery: 4 * time.Second, PGOutage: 330 * time.Second,
		NodeDown: 15 * time.Second, Phase: 20 * time.Second, To: Timeouts{Settle: 5 * time.Minute, SMS: 4 * time.Minute}}
)

// TestChaos runs every case in order against one private PostgreSQL
// cluster and prints the reliability table. PREREG_CHAOS=long runs the
// long cases (`task chaos`); PREREG_CHAOS_TABLE=FILE also writes the table
// there.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: separate processes, kills and outages take a minute or more; skipped under -short (task chaos runs the long cases)")
	}
	isLong := os.Getenv("PREREG_CHAOS") == "long"
	sc := short
	if isLong {
		sc = long
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	suite, err := NewSuite(ctx, isLong)
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	t.Cleanup(suite.Close)
	suite.Env = sc.Env
	t.Logf("chaos: binaries ready after %s", time.Since(suite.started).Round(time.Second))

	// The table, once every case has ended (a parent's cleanup runs after
	// its parallel subtests).
	t.Cleanup(func() {
		table := Table(suite.Rows())
		fmt.Println(table)
		if path := os.Getenv("PREREG_CHAOS_TABLE"); path != "" {
			if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
				t.Errorf("chaos: write table: %v", err)
			}
		}
	})
	cases := []chaosCase{
		{"kill-roles", caseKillRoles},
		{"postgres-outage", casePostgresOutage},
		{"nats-cluster", caseNATSCluster},
		{"providers", caseProviders},
		{"poison", casePoison},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !isLong {
				// The short cases run side by side (as many at once as go
				// test's -parallel, GOMAXPROCS by default), each on its own
				// NATS, processes and database, the PostgreSQL outage on a
				// cluster of its own. The long ones run one after another.
				t.Parallel()
			}
			start := time.Now()
			row := c.run(t, suite, sc)
			suite.Add(row)
			t.Logf("chaos %s: %s", c.name, time.Since(start).Round(time.Second))
			for _, f := range row.Failures {
				t.Errorf("%s: %s", row.Case, f)
			}
		})
	}
}

// chaosCase is one fault case: it runs on a stack of its own and returns
// its row of the table.
type chaosCase struct {
	name string
	run  func(*testing.T, *Suite, scale) Row
}

// surgeFor is how long a surge of sc lasts.
func surgeFor(sc scale) time.Duration {
	return time.Duration(float64(sc.Submissions) / sc.Rate * float64(time.Second))
}

// waitOrDone sleeps d, or less when done closes; it reports whether done
// closed.
func waitOrDone(d time.Duration, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Case 1: every role is SIGKILLed at random moments, several times in one
// surge, and restarted by the suite; notify once more while it sends.
func caseKillRoles(t *testing.T, suite *Suite, sc scale) Row {
	s := NewStack(t, suite, Options{Case: "kill"})
	row := Row{Case: "1 SIGKILL each role, restarted"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	names := make([]string, 0, len(DefaultLayout))
	for _, r := range DefaultLayout {
		names = append(names, r.Name)
	}
	load := s.StartLoad("intake", 1, sc.Submissions, sc.Rate)
	kills := map[string]int{}
	surgeOver := false
rounds:
	for round := 0; ; round++ {
		for _, i := range rng.Perm(len(names)) {
			pause := sc.KillEvery/2 + time.Duration(rng.Int64N(int64(sc.KillEvery)))
			surgeOver = surgeOver || waitOrDone(pause, load.Done())
			if surgeOver && round > 0 {
				break rounds
			}
			p := s.Roles[names[i]]
			if err := s.Restart(ctx, p, time.Duration(100+rng.IntN(600))*time.Millisecond); err != nil {
				row.Failf("restart %s: %v", p.Name, firstLine(err))
				return row
			}
			kills[p.Name]++
		}
	}
	faultEnd := time.Now()
	rep, receipts, err := load.Wait()
	if err != nil {
		row.Failf("loadgen: %v", firstLine(err))
		return row
	}
	row.Submissions = rep.Sent
	var duringSMS func(context.Context)
	if suite.Long {
		// notify killed while it drains the outbox: its leased rows wait
		// for the lease (a minute) to run out, too long for the short run.
		duringSMS = func(ctx context.Context) {
			time.Sleep(300 * time.Millisecond)
			if err := s.Restart(ctx, s.Roles["notify"], 500*time.Millisecond); err != nil {
				row.Failf("restart notify: %v", firstLine(err))
			}
			kills["notify (sending)"]++
		}
	}
	s.Conclude(&row, receipts, faultEnd, sc.To, duringSMS)
	row.Notef("kills during the surge: %s", formatCounts(kills))
	row.Notef("loadgen: %d requests for %d submissions, %d without an HTTP answer, final statuses %s", rep.Attempts, rep.Sent, rep.Errors, formatCounts(rep.Statuses))
	return row
}

// readiness asks every role process's /readyz and returns the status of
// each ("dedupe 503").
func readiness(s *Stack) string {
	client := &http.Client{Timeout: 3 * time.Second}
	var parts []string
	for _, r := range s.opts.Layout {
		status := "no answer"
		if resp, err := client.Get(s.RoleAddr[r.Name] + "/readyz"); err == nil {
			resp.Body.Close()
			status = fmt.Sprint(resp.StatusCode)
		}
		parts = append(parts, r.Name+" "+status)
	}
	return strings.Join(parts, ", ")
}

var (
	reTerminated = regexp.MustCompile(`(?i)terminated|unprocessable|giving up|gave up`)
	// A feed whose pull the server lost says so (stream/feed.go).
	rePullLost = regexp.MustCompile(`(?i)no pull request waiting|no heartbeat`)
)

// logEvidence counts telling log lines of every role process and quotes
// the first of each.
func logEvidence(s *Stack, re *regexp.Regexp) string {
	var parts []string
	for _, r := range s.opts.Layout {
		lines := s.Roles[r.Name].Grep(re, 1<<20)
		if len(lines) > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (first: %s)", r.Name, len(lines), trimLog(lines[0])))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Case 2: PostgreSQL stopped with pg_ctl stop -m immediate mid-surge, for
// longer than every retry budget in the long run, then started again.
func casePostgresOutage(t *testing.T, suite *Suite, sc scale) Row {
	s := NewStack(t, suite, Options{Case: "pg", OwnPostgres: true})
	row := Row{Case: fmt.Sprintf("2 PostgreSQL down %s (immediate stop)", sc.PGOutage)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	load := s.StartLoad("intake", 1, sc.Submissions, sc.Rate)
	time.Sleep(surgeFor(sc) / 3)
	if err := s.PG.Kill(); err != nil {
		row.Failf("pg_ctl stop -m immediate: %v", firstLine(err))
		return row
	}
	downAt := time.Now()
	time.Sleep(min(sc.PGOutage/2, 5*time.Second))
	row.Notef("/readyz during the outage: %s", readiness(s))
	time.Sleep(sc.PGOutage - time.Since(downAt))
	if err := s.PG.Start(ctx); err != nil {
		row.Failf("restart PostgreSQL: %v", firstLine(err))
		return row
	}
	faultEnd := time.Now()
	rep, receipts, err := load.Wait()
	if err != nil {
		row.Failf("loadgen: %v", firstLine(err))
		return row
	}
	row.Submissions = rep.Sent
	s.Conclude(&row, receipts, faultEnd, sc.To, nil)
	row.Notef("/readyz after recovery: %s", readiness(s))
	row.Notef("log lines of messages given up: %s", logEvidence(s, reTerminated))
	return row
}

// streamLeader is the server name of a stream's leader.
func streamLeader(ctx context.Context, js jetstream.JetStream, name string) (string, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return "", err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil {
		return "", fmt.Errorf("stream %s: no cluster info", name)
	}
	return info.Cluster.Leader, nil
}

// waitReplicas waits until each stream has want replicas, all current,
// and a leader.
func waitReplicas(ctx context.Context, js jetstream.JetStream, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok := true
		for _, name := range []string{stream.Submitted, stream.Verified} {
			st, err := js.Stream(ctx, name)
			if err != nil {
				ok = false
				break
			}
			info, err := st.Info(ctx)
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || info.Config.Replicas != want || len(info.Cluster.Replicas) != want-1 {
				ok = false
				break
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					ok = false
				}
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("streams not at %d current replicas after %s", want, timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Case 3: a three-node JetStream cluster from deploy/nats/cluster.conf,
// streams with three replicas, two intake and two dedupe processes (the
// shards split); one node killed mid-surge and restarted, then the
// submitted stream's leader.
func caseNATSCluster(t *testing.T, suite *Suite, sc scale) Row {
	s := NewStack(t, suite, Options{
		Case:      "nats",
		NATSNodes: 3,
		Env:       []string{"PREREG_STREAM_REPLICAS=3"},
		Layout: []RoleSpec{
			{Name: "intake-a", Roles: "intake"},
			{Name: "intake-b", Roles: "intake"},
			{Name: "verify", Roles: "verify"},
			{Name: "dedupe-a", Roles: "dedupe", Env: []string{"PREREG_DEDUPE_SHARDS=0-7"}},
			{Name: "dedupe-b", Roles: "dedupe", Env: []string{"PREREG_DEDUPE_SHARDS=8-15"}},
			{Name: "notify", Roles: "notify"},
			{Name: "admin", Roles: "admin"},
		},
	})
	row := Row{Case: "3 NATS cluster: a node, then the leader's node killed"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	js := s.JS()
	// The processes declared the streams; with a prereg that does not
	// read PREREG_STREAM_REPLICAS they have one replica, and the suite
	// raises them to three through the JetStream API, as an operator would.
	for _, name := range []string{stream.Submitted, stream.Verified} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			row.Failf("stream %s: %v", name, err)
			return row
		}
		info, err := st.Info(ctx)
		if err != nil {
			row.Failf("stream %s: %v", name, err)
			return row
		}
		if info.Config.Replicas < 3 {
			cfg := info.Config
			cfg.Replicas = 3
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				row.Failf("raise %s to 3 replicas: %v", name, err)
				return row
			}
			row.Notef("%s was declared with %d replica(s): PREREG_STREAM_REPLICAS=3 not read; the suite set 3 through the JetStream API", name, info.Config.Replicas)
		}
	}
	if err := waitReplicas(ctx, js, 3, 60*time.Second); err != nil {
		row.Failf("%v", err)
		return row
	}
	// The surge lasts through both kills: intents are in flight at every
	// stage when a node goes.
	rate := min(sc.Rate, float64(sc.Submissions)/(4*sc.NodeDown+10*time.Second).Seconds())
	half := sc.Submissions / 2
	loadA := s.StartLoad("intake-a", 1, half, rate/2)
	loadB := s.StartLoad("intake-b", 2, sc.Submissions-half, rate/2)
	time.Sleep(3 * time.Second)

	// A node that does not lead the submitted stream.
	leader, err := streamLeader(ctx, js, stream.Submitted)
	if err != nil {
		row.Failf("leader: %v", err)
		return row
	}
	var follower, leaderProc *Proc
	for _, p := range s.NATS {
		if p.Name == leader {
			leaderProc = p
		} else if follower == nil {
			follower = p
		}
	}
	if leaderProc == nil {
		row.Failf("leader %q is none of the suite's nodes", leader)
		return row
	}
	follower.Kill()
	time.Sleep(sc.NodeDown)
	if err := follower.Start(ctx); err != nil {
		row.Failf("restart %s: %v", follower.Name, firstLine(err))
		return row
	}
	if err := waitReplicas(ctx, js, 3, 60*time.Second); err != nil {
		row.Notef("after %s came back: %v", follower.Name, err)
	}
	// Then the leader's node.
	if leader, err = streamLeader(ctx, js, stream.Submitted); err == nil {
		for _, p := range s.NATS {
			if p.Name == leader {
				leaderProc = p
			}
		}
	}
	leaderProc.Kill()
	time.Sleep(sc.NodeDown)
	if err := leaderProc.Start(ctx); err != nil {
		row.Failf("restart %s: %v", leaderProc.Name, firstLine(err))
		return row
	}
	faultEnd := time.Now()
	newLeader, _ := streamLeader(ctx, js, stream.Submitted)
	row.Notef("killed %s (follower) then %s (leader of %s) for %s each; leader now %s", follower.Name, leaderProc.Name, stream.Submitted, sc.NodeDown, newLeader)

	var receipts []string
	for _, l := range []*Load{loadA, loadB} {
		rep, r, err := l.Wait()
		if err != nil {
			row.Failf("loadgen: %v", firstLine(err))
			return row
		}
		row.Submissions += rep.Sent
		receipts = append(receipts, r...)
		row.Notef("loadgen seed %d: %d requests for %d submissions (%d retried), final statuses %s", l.Seed, rep.Attempts, rep.Sent, rep.Attempts-rep.Sent, formatCounts(rep.Statuses))
	}
	s.Conclude(&row, receipts, faultEnd, sc.To, nil)
	for _, name := range []string{stream.Submitted, stream.Verified} {
		if st, err := js.Stream(ctx, name); err == nil {
			if info, err := st.Info(ctx); err == nil {
				row.Notef("%s at the end: %d replicas", name, info.Config.Replicas)
				if info.Config.Replicas < 3 {
					row.Failf("%s fell to %d replicas", name, info.Config.Replicas)
				}
			}
		}
	}
	row.Notef("log lines of a lost pull: %s", logEvidence(s, rePullLost))
	row.Notef("/readyz at the end: %s", readiness(s))
	return row
}

// Case 4: the identity providers down, then answering 401 to everything,
// then slower than the campaign's timeout; the SMS gateway down while the
// allocation's SMS start, then rate limiting below notify's own rate.
func caseProviders(t *testing.T, suite *Suite, sc scale) Row {
	s := NewStack(t, suite, Options{Case: "providers", SMSArgs: []string{"--rate", "50", "--burst", "5"}})
	row := Row{Case: "4 providers down, 401, slow; SMS down, rate limited"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	load := s.StartLoad("intake", 1, sc.Submissions, sc.Rate)
	phases := []struct {
		name string
		f    sim.Faults
	}{
		{"down (503)", sim.Faults{Down: true}},
		{"401 to everything", sim.Faults{ErrorRate: 1, ErrorStatus: http.StatusUnauthorized}},
		// The demo campaign gives each provider a 2s timeout.
		{"slow (2.5s)", sim.Faults{Latency: sim.Duration(2500 * time.Millisecond)}},
	}
	time.Sleep(surgeFor(sc) / 4)
	for _, ph := range phases {
		if err := s.SetIdPFaults(ctx, ph.f); err != nil {
			row.Failf("provider faults: %v", err)
			return row
		}
		time.Sleep(sc.Phase)
	}
	if err := s.SetIdPFaults(ctx, sim.Faults{}); err != nil {
		row.Failf("provider faults: %v", err)
		return row
	}
	faultEnd := time.Now()
	rep, receipts, err := load.Wait()
	if err != nil {
		row.Failf("loadgen: %v", firstLine(err))
		return row
	}
	row.Submissions = rep.Sent
	if err := s.SetSMSFaults(ctx, sim.SMSFaults{Down: true}); err != nil {
		row.Failf("sms faults: %v", err)
		return row
	}
	s.Conclude(&row, receipts, faultEnd, sc.To, func(ctx context.Context) {
		time.Sleep(sc.Phase)
		if err := s.SetSMSFaults(ctx, sim.SMSFaults{}); err != nil {
			row.Failf("sms faults: %v", err)
		}
	})
	counts, err := s.DecisionCounts(ctx)
	if err == nil {
		forged := rep.Mix[string(sim.ClassForged)]
		if got := counts["rejected/invalid_token"]; got > forged {
			row.Failf("%d intents rejected as invalid_token, the surge forged %d: the provider's 401s were taken as the tokens' fault", got, forged)
		}
		// A provider's fault is nobody's submission's fault: no intent
		// may end unprocessable because of it.
		if got := counts["rejected/unprocessable"]; got > 0 {
			row.Failf("%d intents rejected as unprocessable while the providers misbehaved", got)
		}
	}
	names := make([]string, len(phases))
	for i, ph := range phases {
		names[i] = ph.name
	}
	row.Notef("provider faults %s, %s each, from a quarter into the surge; gateway down %s, then 50/s", strings.Join(names, ", "), sc.Phase, sc.Phase)
	return row
}

// Case 5: an undecodable message in each stream, published as intake and
// verify publish theirs (with a Nats-Msg-Id), during a surge.
func casePoison(t *testing.T, suite *Suite, sc scale) Row {
	s := NewStack(t, suite, Options{Case: "poison"})
	row := Row{Case: "5 poison message in each stream"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// The terminations JetStream announces: evidence that a consumer gave
	// a message up.
	var terminated atomic.Int64
	sub, err := s.nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>", func(*nats.Msg) { terminated.Add(1) })
	if err != nil {
		row.Failf("subscribe advisories: %v", err)
		return row
	}
	defer sub.Unsubscribe()
	s.AllowPending = 2
	load := s.StartLoad("intake", 1, sc.Submissions/2, sc.Rate)
	poison := []struct{ stream, subject, id string }{
		{stream.Submitted, stream.SubmittedSubject(3), "poison-submitted-" + randomHex(4)},
		{stream.Verified, stream.VerifiedSubject(3), "poison-verified-" + randomHex(4)},
	}
	seqs := map[string]uint64{}
	for _, p := range poison {
		msg := nats.NewMsg(p.subject)
		msg.Header.Set(jetstream.MsgIDHeader, p.id)
		msg.Data = []byte("{\"campaign\": \x00 not json")
		ack, err := s.js.PublishMsg(ctx, msg)
		if err != nil {
			row.Failf("publish poison to %s: %v", p.stream, err)
			return row
		}
		seqs[p.id] = ack.Sequence
	}
	faultEnd := time.Now()
	rep, receipts, err := load.Wait()
	if err != nil {
		row.Failf("loadgen: %v", firstLine(err))
		return row
	}
	row.Submissions = rep.Sent
	s.Conclude(&row, receipts, faultEnd, sc.To, nil)

	ids := make([]string, 0, len(poison))
	for _, p := range poison {
		ids = append(ids, p.id)
	}
	decided, _, err := s.Decided(ctx, ids)
	if err != nil {
		row.Failf("%v", err)
		return row
	}
	for _, p := range poison {
		if decided[p.id] {
			row.Notef("poison in %s: recorded as a decision", p.stream)
			continue
		}
		if where, reason, ok := deadLetter(ctx, s, p.stream, seqs[p.id], p.id); ok {
			row.Notef("poison in %s (stream seq %d): a dead letter in %s (%s), listed by `prereg deadletter list`", p.stream, seqs[p.id], where, reason)
			continue
		}
		evidence := poisonEvidence(s, p.stream, seqs[p.id])
		row.Failf("poison in %s (stream seq %d): no decision and no dead letter: dropped (log: %s)", p.stream, seqs[p.id], strings.Join(evidence, " | "))
	}
	if n, err := s.Pending(ctx); err == nil && n > 0 {
		row.Notef("%d message(s) still unacknowledged at the end", n)
	}
	row.Notef("JetStream termination advisories seen: %d", terminated.Load())
	return row
}

// deadLetter finds the dead letter a poison message ended as: its own
// (stream, sequence), or, for an intent verify could not read, the
// unprocessable outcome it became, which names the same receipt.
func deadLetter(ctx context.Context, s *Stack, streamName string, seq uint64, msgID string) (where, reason string, ok bool) {
	db, err := s.DB(ctx)
	if err != nil {
		return "", "", false
	}
	err = db.QueryRow(ctx, `SELECT stream, reason FROM dead_letters
		WHERE (stream = $1 AND stream_seq = $2) OR msg_id = $3 ORDER BY id LIMIT 1`, streamName, int64(seq), msgID).Scan(&where, &reason)
	return where, reason, err == nil
}

// poisonEvidence is what the role processes logged about the message at
// seq of the named stream: verify reads the submitted stream and logs its
// sequence; dedupe reads the verified stream and logs the subject too.
func poisonEvidence(s *Stack, streamName string, seq uint64) []string {
	re := regexp.MustCompile(fmt.Sprintf(`stream_seq=%d\b`, seq))
	var out []string
	for _, r := range s.opts.Layout {
		for _, line := range s.Roles[r.Name].Grep(re, 5) {
			onVerified := strings.Contains(line, "subject=intents.verified")
			if r.Roles == "verify" && streamName == stream.Submitted || onVerified && streamName == stream.Verified {
				out = append(out, r.Name+": "+trimLog(line))
			}
		}
	}
	return out
}

// trimLog drops a log line's time stamp and bounds its length.
func trimLog(line string) string {
	if i := strings.Index(line, "level="); i >= 0 {
		line = line[i:]
	}
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}
