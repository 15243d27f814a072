package world_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/check"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

const (
	consoleOperator = "operator-console-token-0123456789"
	consoleAuditor  = "auditor-console-token-0123456789"
)

// An operator walks the console through one window during a demo surge:
// signs in, watches the numbers move, pauses intake (every submission
// then 503 paused) and resumes it, releases one held submission and
// rejects the rest in bulk, dry-runs then runs the allocation, resends
// one SMS, and finds each of those actions in the audit log page; the
// console's decided and registered counts are prereg check's. An auditor
// then signs in, finds every action disabled, looks up receipts (the
// decision, appointment and SMS versions shown are the database's) and
// reads the Report tab's decision counts (the database's, summing to
// prereg check's decided). Screenshots go to
// $PREREG_SCREENSHOTS, else to a folder the test logs.
func TestConsoleWalkThrough(t *testing.T) {
	chrome := browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	env := map[string]string{"PREREG_ADMIN_TOKENS": "operator:" + consoleOperator + ",auditor:" + consoleAuditor}
	start := time.Now()
	w := startWorld(t, ctx, env, world.Options{Clinics: 60, Seed: 11, Now: start})
	defer w.Close()
	c := w.Campaign

	shots := os.Getenv("PREREG_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "prereg-console-screenshots")
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	t.Logf("screenshots in %s", shots)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-GB"), chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644))
	}
	// number reads a figure the console shows: the digits of an element's
	// text (the part after "total" for a card's sub line).
	number := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`(() => { const s = `+js+`; const m = s.match(/total ([\d,]+)/); return parseInt((m ? m[1] : s).replace(/[^\d]/g, "") || "0", 10); })()`))
		require.NoError(t, err)
		return n
	}
	accept := []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(chromedp.CSS("#confirm-ok")), chromedp.Click(chromedp.CSS("#confirm-ok")), chromedp.WaitNotVisible(chromedp.CSS("#confirm"))}

	// Sign in as the operator, in English.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(w.BaseURL+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS("#signin-form")),
		chromedp.Poll[chromedp.Void](`document.getElementById("lang").textContent !== ""`),
	))
	if l, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.lang`)); l != "en" {
		require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#lang"))))
	}
	require.NoError(t, chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS("#token"), consoleOperator),
		chromedp.Click(chromedp.CSS("#signin-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		chromedp.Poll[chromedp.Void](`document.getElementById("v-accepted") !== null`),
	))
	stored, err := chromedp.Run(bctx, chromedp.Evaluate[string](`sessionStorage.getItem("prereg-admin-token") || ""`))
	require.NoError(t, err)
	require.Equal(t, consoleOperator, stored, "the token lives in the tab's sessionStorage")
	url, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href`))
	require.NoError(t, err)
	require.NotContains(t, url, consoleOperator, "never a token in a URL")

	// The surge, while the console watches.
	pop, err := sim.NewPopulation(11, sim.PeopleFor(2000, c, start), c.Cohort)
	require.NoError(t, err)
	surge, err := sim.NewSurge(pop, sim.SurgeConfig{Submissions: 2000, Seed: 11, Campaign: c, Providers: w.IdPs, Now: start})
	require.NoError(t, err)
	loaded := make(chan *sim.LoadResult, 1)
	go func() {
		res, err := sim.RunLoad(ctx, surge.Submissions, sim.LoadConfig{Target: w.BaseURL, Rate: 200})
		if err != nil {
			t.Errorf("surge: %v", err)
		}
		loaded <- res
	}()
	decidedTotal := `document.querySelector("#card-decided .sub").textContent`
	require.Eventually(t, func() bool { return number(decidedTotal) > 0 }, time.Minute, 500*time.Millisecond, "decisions show up")
	first := number(decidedTotal)
	shoot("console-1-surge")
	require.Eventually(t, func() bool { return number(decidedTotal) > first }, time.Minute, 500*time.Millisecond, "the numbers move during the surge")
	res := <-loaded
	require.NotNil(t, res)
	require.Positive(t, res.ByStatus[http.StatusAccepted])
	// However much the surge's shared devices were shed on a busy
	// machine, two devices each submit for one person over the cap: two
	// held decisions at least.
	for d := range 2 {
		for p := range sim.DemoDeviceCap + 1 {
			person := fmt.Sprintf("console-shared-%d-%d", d, p)
			birth := fmt.Sprintf("1985-03-1%d", p)
			body, _ := json.Marshal(map[string]any{
				"campaign": c.ID, "provider": "pass", "birthdate": birth, "region": "11680",
				"phone": fmt.Sprintf("010-5555-%02d%02d", d, p), "device_id": fmt.Sprintf("console-shared-%d", d),
				"identity_token": w.IdPs["pass"].Issue(sim.TokenClaims{Person: person, Birthdate: birth, Phone: fmt.Sprintf("+8210555%02d%02d", d, p), Nonce: 1}),
			})
			require.Eventually(t, func() bool {
				resp, err := http.Post(w.BaseURL+"/v1/intents", "application/json", bytes.NewReader(body))
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusAccepted
			}, 30*time.Second, 200*time.Millisecond, "a shared device's submission accepted")
		}
	}

	// Settled: nothing in flight by prereg check's count, and the console
	// shows every decision (a 202 the surge's client gave up on under load
	// is decided too: the database, not the client, is the truth).
	settled := func() *check.Report {
		t.Helper()
		var rep *check.Report
		require.Eventually(t, func() bool {
			var err error
			rep, err = check.Run(ctx, w.Pool, c.ID, check.Options{JS: w.JS})
			return err == nil && rep.InFlight == 0
		}, 2*time.Minute, 500*time.Millisecond, "the pipeline settles")
		return rep
	}
	rep := settled()
	decided := rep.Outcomes - rep.DeadLetters
	require.Eventually(t, func() bool { return number(decidedTotal) == decided }, time.Minute, 200*time.Millisecond,
		"the console counts every decision check matched with its outcome (%d)", decided)
	shoot("console-2-settled")

	// Pause intake: within one refresh every submission is 503 paused;
	// resumed, the same request is checked again (400 for its missing
	// fields).
	probe := func() (int, map[string]any) {
		body, _ := json.Marshal(map[string]any{"campaign": c.ID, "device_id": "probe"})
		resp, err := http.Post(w.BaseURL+"/v1/intents", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode == http.StatusServiceUnavailable {
			require.NotEmpty(t, resp.Header.Get("Retry-After"))
		}
		return resp.StatusCode, out
	}
	code, _ := probe()
	require.Equal(t, http.StatusBadRequest, code)
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#pause"))}, accept...)...))
	paused := time.Now()
	require.Eventually(t, func() bool { code, _ = probe(); return code == http.StatusServiceUnavailable }, 15*time.Second, 100*time.Millisecond, "paused on intake")
	_, body := probe()
	require.Equal(t, "paused", body["error"])
	t.Logf("intake answered paused %.1fs after the operator confirmed", time.Since(paused).Seconds())
	require.NoError(t, chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`document.getElementById("pause-state").classList.contains("paused")`)))
	shoot("console-3-paused")
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#resume"))}, accept...)...))
	require.Eventually(t, func() bool { code, _ = probe(); return code == http.StatusBadRequest }, 15*time.Second, 100*time.Millisecond, "resumed")

	// Held review: release the first, reject the rest in bulk.
	var held int
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE campaign = $1 AND kind = 'held' AND review IS NULL`, c.ID).Scan(&held))
	require.GreaterOrEqual(t, held, 2, "the surge's shared devices leave submissions held")
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-tab="held"]`)),
		chromedp.WaitVisible(chromedp.CSS("#held .held-release")),
	))
	shoot("console-4-held")
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#held .held-release"))}, accept...)...))
	require.NoError(t, chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`document.querySelectorAll("#held .held-pick").length === `+itoa(held-1))))
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS("#held-all")), chromedp.Click(chromedp.CSS("#held-reject-selected")),
	}, accept...)...))
	require.NoError(t, chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`document.querySelectorAll("#held .held-pick").length === 0`)))
	var released, rejected int
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE review = 'released'), count(*) FILTER (WHERE review = 'rejected')
		FROM decisions WHERE campaign = $1 AND kind = 'held'`, c.ID).Scan(&released, &rejected))
	require.Equal(t, 1, released)
	require.Equal(t, held-1, rejected)

	// Allocation: the run is offered only after a dry run of the same
	// window and policy.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-tab="allocation"]`)),
		chromedp.SetValue(chromedp.CSS("#alloc-window"), "open"),
		chromedp.SetValue(chromedp.CSS("#alloc-policy"), "lottery"),
	))
	disabled, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("alloc-run").disabled`))
	require.NoError(t, err)
	require.True(t, disabled, "no run before a dry run")
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#alloc-dry"))}, accept...)...))
	require.NoError(t, chromedp.Do(bctx,
		chromedp.WaitVisible(chromedp.CSS(`#alloc-table[data-state="done"][data-dry="true"]`)),
		chromedp.WaitEnabled(chromedp.CSS("#alloc-run")),
	))
	shoot("console-5-dry-run")
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#alloc-run"))}, accept...)...))
	require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS(`#alloc-table[data-state="done"][data-dry="false"]`))))
	var appointments int
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE campaign = $1`, c.ID).Scan(&appointments))
	require.Positive(t, appointments)

	// SMS: once the first messages are delivered, resend one.
	var appointment int64
	require.Eventually(t, func() bool {
		err := w.Pool.QueryRow(ctx, `SELECT appointment_id FROM outbox WHERE campaign = $1 AND state = 'delivered' ORDER BY id LIMIT 1`, c.ID).Scan(&appointment)
		return err == nil
	}, time.Minute, 200*time.Millisecond, "an SMS delivered")
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-tab="sms"]`)),
		chromedp.SetValue(chromedp.CSS("#sms-appointment"), itoa(int(appointment))),
	))
	require.NoError(t, chromedp.Do(bctx, append([]chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("#sms-resend"))}, accept...)...))
	require.NoError(t, chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`document.querySelector("#sms-msg.ok") !== null`)))
	msg, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#sms-msg")))
	require.NoError(t, err)
	require.Contains(t, msg, "Resend requested: version 2")
	shoot("console-6-sms")

	// The audit log page lists every action taken, newest first.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-tab="audit"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#audit tbody tr[data-action]").length >= 7`),
	))
	actions, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#audit tbody tr[data-action]")).map(r => r.dataset.action)`))
	require.NoError(t, err)
	require.Equal(t, []string{"outbox.resend", "allocation.start", "allocation.start", "held.review_bulk", "held.release", "intake.resume", "intake.pause"}, actions)
	shoot("console-7-audit")

	// The console's counts are prereg check's, on the settled pipeline.
	rep = settled()
	require.True(t, rep.OK, "invariants: %v", rep.Failed())
	// A release registers its person, beside the registered decisions,
	// unless they were registered already.
	var registrations, byRelease int
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE first_receipt IN
		(SELECT receipt FROM decisions WHERE campaign = $1 AND review = 'released')) FROM registrations WHERE campaign = $1`, c.ID).Scan(&registrations, &byRelease))
	require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#tabs button[data-tab="pipeline"]`))))
	require.Eventually(t, func() bool {
		return number(decidedTotal) == rep.Outcomes-rep.DeadLetters
	}, time.Minute, 200*time.Millisecond, "decided: the outcomes check matched with decisions (%d)", rep.Outcomes-rep.DeadLetters)
	registered := number(`document.getElementById("v-registered").textContent`)
	require.Equal(t, registrations-byRelease, registered, "registered: every registration but one a release made")
	shoot("console-8-pipeline")

	// The auditor reads, and every action is disabled.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#signin-form")),
		chromedp.SetValue(chromedp.CSS("#token"), consoleAuditor),
		chromedp.Click(chromedp.CSS("#signin-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#readonly")),
		chromedp.Poll[chromedp.Void](`document.getElementById("v-accepted") !== null`),
	))
	enabled, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("button.op, input.op")).filter(b => !b.disabled).map(b => b.id || b.className)`))
	require.NoError(t, err)
	require.Empty(t, enabled, "no action enabled for an auditor")
	who, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#who")))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(who, "auditor"), who)

	// The auditor's Receipt tab shows a submission's decision as the
	// database holds it: the registration whose SMS was resent, with its
	// appointment and both SMS versions, and the released held one.
	var (
		apptReceipt, apptKind, releasedReceipt string
	)
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT d.receipt, d.kind FROM appointments a JOIN registrations r ON r.id = a.registration_id
		JOIN decisions d ON d.receipt = r.first_receipt WHERE a.id = $1`, appointment).Scan(&apptReceipt, &apptKind))
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT receipt FROM decisions WHERE campaign = $1 AND review = 'released'`, c.ID).Scan(&releasedReceipt))
	lookup := func(receipt string) map[string]string {
		t.Helper()
		require.NoError(t, chromedp.Do(bctx,
			chromedp.Click(chromedp.CSS(`#tabs button[data-tab="receipt"]`)),
			chromedp.WaitVisible(chromedp.CSS("#receipt-id")),
			chromedp.SetValue(chromedp.CSS("#receipt-id"), receipt),
			chromedp.Click(chromedp.CSS(`#receipt-form button[type=submit]`)),
			chromedp.Poll[chromedp.Void](`Array.from(document.querySelectorAll("#receipt-result tr")).some(r => r.querySelector("th").textContent === "receipt" && r.querySelector("td").textContent === `+quote(receipt)+`)`),
		))
		rows, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](`Object.fromEntries(Array.from(document.querySelectorAll("#receipt-result tr")).map(r => [r.querySelector("th").textContent, r.querySelector("td").textContent]))`))
		require.NoError(t, err)
		return rows
	}
	shown := lookup(apptReceipt)
	require.Equal(t, apptKind, shown["decision"], "the Receipt tab shows the database's decision")
	require.Equal(t, itoa(int(appointment)), shown["appointment.id"], "and the registration's appointment")
	var versions []struct {
		Version     int    `json:"version"`
		RequestedBy string `json:"requested_by"`
	}
	require.NoError(t, json.Unmarshal([]byte(shown["sms"]), &versions), shown["sms"])
	require.Len(t, versions, 2, "the first SMS and the operator's resend")
	require.Equal(t, 2, versions[1].Version)
	require.NotEmpty(t, versions[1].RequestedBy, "a resend names who asked for it")
	shoot("console-9-receipt")
	shown = lookup(releasedReceipt)
	require.Equal(t, "held", shown["decision"])
	require.Equal(t, "released", shown["held.review"], "the held submission's review as the operator made it")

	// The Report tab's decision counts are the database's, by kind and
	// reason, and together the decisions prereg check counted.
	rows, err := w.Pool.Query(ctx, `SELECT kind, CASE WHEN kind = 'registered' THEN '' ELSE coalesce(reason, '') END, count(*)
		FROM decisions WHERE campaign = $1 GROUP BY 1, 2`, c.ID)
	require.NoError(t, err)
	want := map[string]int{}
	for rows.Next() {
		var kind, reason string
		var n int
		require.NoError(t, rows.Scan(&kind, &reason, &n))
		want[kind+"/"+reason] += n
	}
	require.NoError(t, rows.Err())
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-tab="report"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#report-totals tbody tr[data-kind]").length > 0`),
	))
	cells, err := chromedp.Run(bctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll("#report-totals tbody tr[data-kind]")).map(r => [r.dataset.kind, r.dataset.reason, r.cells[2].textContent])`))
	require.NoError(t, err)
	got := map[string]int{}
	total := 0
	for _, cell := range cells {
		n, err := strconv.Atoi(strings.NewReplacer(",", "", ".", "", "\u00a0", "").Replace(cell[2]))
		require.NoError(t, err, "a count: %q", cell[2])
		got[cell[0]+"/"+cell[1]] = n
		total += n
	}
	require.Equal(t, want, got, "the Report tab counts the decisions the database holds, by kind and reason")
	require.Equal(t, rep.Outcomes-rep.DeadLetters, total, "and all the decisions prereg check matched with outcomes")
	shoot("console-10-report")
	require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#lang")), chromedp.Poll[chromedp.Void](`document.documentElement.lang === "ko"`)))
	shoot("console-11-auditor-ko")
}

// quote is s as a JavaScript string literal.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
