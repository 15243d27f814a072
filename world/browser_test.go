package world_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/world"
)

// browserNames are the names a Chromium goes by on PATH: Debian's first.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// browser returns the path of the Chromium every browser test drives. A
// fresh machine has none, and `go test ./...` must still pass there, so
// the test skips with one line saying what to install; in CI (CI=true),
// which installs it, a missing browser is a failure instead, so the
// browser tests cannot quietly stop running. The fonts give the Korean
// page its glyphs.
func browser(tb testing.TB) string {
	tb.Helper()
	for _, name := range browserNames {
		if p, err := osexec.LookPath(name); err == nil {
			return p
		}
	}
	const need = "no Chromium on PATH; install it with: apt-get install chromium fonts-noto-cjk"
	if os.Getenv("CI") == "true" {
		tb.Fatal(need + " (CI=true: the browser tests must run)")
	}
	tb.Skip(need)
	return ""
}

// axeScript is axe-core (testdata/axe-core, its version in the README
// there), run in the page for the accessibility check.
//
//go:embed testdata/axe-core/axe.min.js
var axeScript string

// screenshots is the folder a browser test writes its screenshots to:
// $PREREG_SCREENSHOTS/<test> when set (CI keeps it), else one under the
// test's temporary folder. The test logs where.
func screenshots(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "screenshots")
	if root := os.Getenv("PREREG_SCREENSHOTS"); root != "" {
		dir = filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Logf("screenshots in %s", dir)
	return dir
}

// chrome starts a headless Chromium with a fresh profile (its own
// localStorage, so its own device id).
func chrome(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "ko-KR"),
		chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	require.NoError(t, chromedp.Do(bctx)) // start it now
	return bctx
}

// viewport is a screen the page must work on.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var viewports = []viewport{{"phone", 360, 740, true}, {"desktop", 1280, 900, false}}

// shot writes a full-page screenshot as <dir>/<name>.png.
func shot(t *testing.T, bctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// accessible runs axe-core in the page (WCAG 2.0–2.2 A and AA rules)
// and fails on any serious or critical violation.
func accessible(t *testing.T, bctx context.Context, step string) {
	t.Helper()
	loaded, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`typeof window.axe === "object"`))
	require.NoError(t, err)
	if !loaded {
		_, err := chromedp.Run(bctx, chromedp.Evaluate[chromedp.Void](axeScript))
		require.NoError(t, err, "inject axe-core")
	}
	raw, err := chromedp.Run(bctx, chromedp.Evaluate[string](
		`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}}).then(r => JSON.stringify(r.violations))`,
		chromedp.EvalAwaitPromise))
	require.NoError(t, err, "run axe-core")
	var vs []axeViolation
	require.NoError(t, json.Unmarshal([]byte(raw), &vs))
	var bad []string
	for _, v := range vs {
		line := fmt.Sprintf("%s (%s): %s at %v", v.ID, v.Impact, v.Help, v.Nodes)
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, line)
		} else {
			t.Logf("%s: axe, minor: %s", step, line)
		}
	}
	require.Empty(t, bad, "%s: serious or critical accessibility violations", step)
}

// setSelect picks an option of a select as a person would, firing the
// change event the page listens to.
func setSelect(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event("change", {bubbles: true})); })()`, sel, value))
}

// surge makes intake answer 503 for real: the submitted stream refuses
// every message (its largest message is one byte) until undone.
func surge(t *testing.T, ctx context.Context, w *world.World, on bool) {
	t.Helper()
	js, err := jetstream.New(w.NC)
	require.NoError(t, err)
	s, err := js.Stream(ctx, stream.Submitted)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = -1
	if on {
		cfg.MaxMsgSize = 1
	}
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}

// idempotentBodies is how many Idempotency-Keys intake has recorded a
// first body for (stream.ReceiptBodies): one per submission the page
// made, however often it retried.
func idempotentBodies(t *testing.T, ctx context.Context, w *world.World) uint64 {
	t.Helper()
	js, err := jetstream.New(w.NC)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, stream.ReceiptBodies)
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	return st.Values()
}

// words are what the test reads on the page, per language.
var words = map[string]map[string]string{
	"ko": {"signed": "본인 인증을 마쳤습니다", "accepted": "접수되었습니다. 접수번호:", "registered": "등록됨",
		"waiting": "자동으로 다시 보냅니다", "changed": "희망 의료기관을 변경했습니다.", "cancelled": "신청을 취소했습니다.", "s_cancelled": "취소됨"},
	"en": {"signed": "You are signed in with", "accepted": "Received. Your receipt:", "registered": "registered",
		"waiting": "Sending again by itself", "changed": "Your preferred clinic is changed.", "cancelled": "Your application is cancelled.", "s_cancelled": "cancelled"},
}

// A new citizen in a real browser, on a phone and on a desktop, in Korean
// and in English: opens the page, signs in with the identity provider
// (its sign-in page, back with a token bound to this browser), fills the
// form, submits in the middle of a surge (intake answers 503: the page
// counts down and retries by itself with the same key, and a second
// click sends nothing), gets a receipt, looks it up until the pipeline
// has registered them, changes the clinic and cancels, getting one SMS
// for it. Every step passes axe-core without a serious violation and
// leaves a screenshot.
func TestBrowserCitizenJourney(t *testing.T) {
	path := browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	w := startWorld(t, ctx, nil, world.Options{Clinics: 50, Seed: 7})
	defer w.Close()
	dir := screenshots(t)

	n := 0
	for _, lang := range []string{"ko", "en"} {
		for _, vp := range viewports {
			n++
			name := lang + "-" + vp.name
			t.Run(name, func(t *testing.T) {
				say := words[lang]
				step := func(s string) string { return fmt.Sprintf("%s-%s", name, s) }
				bctx := chrome(t, ctx, path)
				var vopts []chromedp.EmulateViewportOption
				if vp.mobile {
					vopts = append(vopts, chromedp.EmulateScale(2), chromedp.EmulateMobile)
				}
				require.NoError(t, chromedp.Do(bctx, chromedp.EmulateViewport(vp.width, vp.height, vopts...)))

				// The page, in the language asked for.
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Navigate(w.BaseURL+"/?lang="+lang),
					chromedp.WaitVisible(chromedp.CSS(`button.signin[data-provider="pass"]`)),
				))
				htmlLang, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.lang`))
				require.NoError(t, err)
				require.Equal(t, lang, htmlLang)
				if vp.mobile {
					wide, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
					require.NoError(t, err)
					require.False(t, wide, "nothing wider than a 360 px screen")
				}
				shot(t, bctx, dir, step("01-page"))
				accessible(t, bctx, step("page"))

				// Sign in with the provider: its page, a person, back.
				birth := "1990-08-13" // digit 3: open in the demo campaign
				phone := fmt.Sprintf("010-2345-%04d", 6780+n)
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Click(chromedp.CSS(`button.signin[data-provider="pass"]`)),
					chromedp.WaitVisible(chromedp.CSS(`form[action="/login"]`)),
				))
				shot(t, bctx, dir, step("02-provider"))
				if n == 1 {
					// One of the listed synthetic people (born 1990-08-13).
					require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`button[name=person][value="0"]`))))
					phone = sim.DemoLoginPeople[0].Phone
				} else {
					require.NoError(t, chromedp.Do(bctx,
						chromedp.SetValue(chromedp.CSS("#typed-id"), "browser-"+name),
						chromedp.SetValue(chromedp.CSS("#typed-birthdate"), birth),
						chromedp.SetValue(chromedp.CSS("#typed-phone"), phone),
						chromedp.Click(chromedp.CSS(`button[name=person][value="typed"]`)),
					))
				}
				require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS("#signin-done"))))
				signed, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#signin-done")))
				require.NoError(t, err)
				require.Contains(t, signed, say["signed"])
				loc, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href`))
				require.NoError(t, err)
				require.NotContains(t, loc, "token", "the token leaves the address bar at once")

				// The form: birth date, phone, region, and a clinic from
				// the campaign's list where the list is served.
				require.NoError(t, chromedp.Do(bctx,
					chromedp.SetValue(chromedp.CSS("#birthdate"), birth),
					chromedp.SetValue(chromedp.CSS("#phone"), phone),
					setSelect("#region", "11680"),
				))
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Poll[chromedp.Void](`document.querySelectorAll("#clinic option").length > 1`, chromedp.WithPollingTimeout(10*time.Second)),
					chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById("clinic"); s.value = s.options[1].value; })()`),
				))
				shot(t, bctx, dir, step("03-form"))
				accessible(t, bctx, step("form"))

				// A surge: intake refuses (503) and the page waits by itself.
				bodies := idempotentBodies(t, ctx, w)
				surge(t, ctx, w, true)
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Click(chromedp.CSS("#send")),
					chromedp.Click(chromedp.CSS("#send")), // a double click
					chromedp.Poll[chromedp.Void](`!document.getElementById("wait").hidden && /\d/.test(document.getElementById("wait-count").textContent)`,
						chromedp.WithPollingTimeout(20*time.Second)),
				))
				waiting, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#wait")))
				require.NoError(t, err)
				require.Contains(t, waiting, say["waiting"])
				disabled, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("send").disabled`))
				require.NoError(t, err)
				require.True(t, disabled, "no second submission while the first waits")
				shot(t, bctx, dir, step("04-surge-countdown"))
				accessible(t, bctx, step("surge"))
				// It waits at least one more round, then the surge ends.
				time.Sleep(1500 * time.Millisecond)
				surge(t, ctx, w, false)
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Poll[chromedp.Void](`document.getElementById("receipt").value !== "" || document.querySelector("#submit-result .err") !== null`,
						chromedp.WithPollingTimeout(40*time.Second)),
				))
				submitted, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#submit-result")))
				require.NoError(t, err)
				require.Contains(t, submitted, say["accepted"], "the page answered: %s", submitted)
				receipt, err := chromedp.Run(bctx, chromedp.Value(chromedp.CSS("#receipt")))
				require.NoError(t, err)
				require.Equal(t, bodies+1, idempotentBodies(t, ctx, w), "every retry sent the same key: one submission")
				shot(t, bctx, dir, step("05-receipt"))
				accessible(t, bctx, step("receipt"))

				// Lookup until the pipeline has decided.
				var status string
				require.Eventually(t, func() bool {
					if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#lookup button[type=submit]")), chromedp.Sleep(300*time.Millisecond)); err != nil {
						return false
					}
					status, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#lookup-result")))
					return err == nil && strings.HasPrefix(strings.TrimSpace(status), say["registered"])
				}, time.Minute, time.Second, "status stayed %q", status)
				shot(t, bctx, dir, step("06-lookup"))
				accessible(t, bctx, step("lookup"))

				// A wrong birth date through the JSON API: 404, like a
				// receipt never issued.
				resp, err := http.Get(w.BaseURL + "/v1/intents/" + receipt + "?birthdate=1990-08-14")
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusNotFound, resp.StatusCode)

				// Change the clinic.
				require.NoError(t, chromedp.Do(bctx,
					chromedp.WaitVisible(chromedp.CSS("#change")),
					setSelect("#change-region", "11680"),
					chromedp.Poll[chromedp.Void](`document.querySelectorAll("#change-clinic option").length > 1`, chromedp.WithPollingTimeout(10*time.Second)),
					chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById("change-clinic"); s.value = s.options[s.options.length - 1].value; })()`),
					chromedp.Click(chromedp.CSS("#change button[type=submit]")),
					chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById("manage-result").textContent.includes(%q) || document.querySelector("#manage-result .err") !== null`, say["changed"]),
						chromedp.WithPollingTimeout(10*time.Second)),
				))
				changed, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#manage-result")))
				require.NoError(t, err)
				require.Contains(t, changed, say["changed"])
				shot(t, bctx, dir, step("07-changed"))

				// Cancel, with a confirmation; one SMS says so.
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Click(chromedp.CSS("#cancel")),
					chromedp.WaitVisible(chromedp.CSS("#cancel-confirm")),
				))
				focused, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.activeElement.id`))
				require.NoError(t, err)
				require.Equal(t, "cancel-no", focused, "the safe answer has the focus")
				shot(t, bctx, dir, step("08-cancel-confirm"))
				accessible(t, bctx, step("cancel-confirm"))
				require.NoError(t, chromedp.Do(bctx,
					chromedp.Click(chromedp.CSS("#cancel-yes")),
					chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById("manage-result").textContent.includes(%q) || document.querySelector("#manage-result .err") !== null`, say["cancelled"]),
						chromedp.WithPollingTimeout(10*time.Second)),
				))
				done, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#manage-result")))
				require.NoError(t, err)
				require.Contains(t, done, say["cancelled"])
				require.Eventually(t, func() bool {
					s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#lookup-result")))
					return err == nil && strings.HasPrefix(strings.TrimSpace(s), say["s_cancelled"])
				}, 10*time.Second, 200*time.Millisecond)
				shot(t, bctx, dir, step("09-cancelled"))
				accessible(t, bctx, step("cancelled"))
				e164 := "+82" + strings.ReplaceAll(phone, "-", "")[1:]
				require.Eventually(t, func() bool { return w.Gateway.Handsets().Received(e164) >= 1 }, time.Minute, 200*time.Millisecond, "the cancellation SMS")
				time.Sleep(2 * time.Second)
				require.Equal(t, 1, w.Gateway.Handsets().Received(e164), "one cancellation SMS, once")
			})
		}
	}
}

// Without JavaScript the page still submits (with a token pasted from
// the provider's app) and looks up, through plain form posts, in Korean.
func TestBrowserWithoutJavaScript(t *testing.T) {
	path := browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	w := startWorld(t, ctx, nil, world.Options{Clinics: 50, Seed: 7})
	defer w.Close()
	dir := screenshots(t)

	const birth = "1990-08-13"
	token := w.IdPs["pass"].Issue(sim.TokenClaims{Person: "no-script-citizen", Birthdate: birth, Phone: "+821034567890", Device: "app", Nonce: 1})
	bctx := chrome(t, ctx, path)
	require.NoError(t, chromedp.Do(bctx,
		emulationScriptsOff(),
		chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(w.BaseURL+"/?lang=ko"),
		chromedp.WaitVisible(chromedp.CSS("#submit")),
	))
	hidden, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS("#signin"), "hidden"))
	require.NoError(t, err)
	require.True(t, hidden.Exists, "without the script there is no sign-in button to press")
	// Values as attributes: DOM edits that need no script in the page.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.SetAttributeValue(chromedp.CSS("#token-details"), "open", ""),
		chromedp.SetAttributeValue(chromedp.CSS(`#provider option[value="pass"]`), "selected", ""),
		chromedp.SetAttributeValue(chromedp.CSS("#identity_token"), "value", token),
		chromedp.SetAttributeValue(chromedp.CSS("#birthdate"), "value", birth),
		chromedp.SetAttributeValue(chromedp.CSS("#phone"), "value", "010-3456-7890"),
		chromedp.SetAttributeValue(chromedp.CSS(`#region option[value="11680"]`), "selected", ""),
	))
	shot(t, bctx, dir, "01-form-no-script")
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS("#send")),
		chromedp.WaitVisible(chromedp.CSS("#submit-result .box")),
	))
	res, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#submit-result")))
	require.NoError(t, err)
	require.Contains(t, res, "접수되었습니다. 접수번호:")
	loc, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href`))
	require.NoError(t, err)
	require.NotContains(t, loc, birth, "the birth date is never in a URL")
	shot(t, bctx, dir, "02-receipt-no-script")

	// The lookup form comes filled in with the receipt and birth date.
	var status string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		actx, acancel := context.WithTimeout(bctx, 10*time.Second)
		err := chromedp.Do(actx,
			chromedp.Click(chromedp.CSS("#lookup button[type=submit]")),
			chromedp.WaitVisible(chromedp.CSS("#lookup-result .box")),
		)
		if err == nil {
			status, err = chromedp.Run(actx, chromedp.Text(chromedp.CSS("#lookup-result")))
		}
		acancel()
		if err == nil && strings.HasPrefix(strings.TrimSpace(status), "등록됨") {
			break
		}
		if time.Now().After(deadline) {
			shot(t, bctx, dir, "03-lookup-no-script-failed")
			t.Fatalf("status stayed %q (%v)", status, err)
		}
	}
	shot(t, bctx, dir, "03-lookup-no-script")
}

// emulationScriptsOff turns the page's JavaScript off, as a citizen's
// browser may have it; the test's own DOM edits go through DevTools.
func emulationScriptsOff() chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return chromedp.Void{}, err
	}
}
