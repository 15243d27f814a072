package world_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
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

// A citizen in a real browser: opens the page, submits the form with a
// token from the (simulated) identity provider, gets a receipt at once,
// and looks it up until the pipeline has registered them.
func TestBrowserSubmitAndLookUp(t *testing.T) {
	chrome := browser(t)
	srv := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, err := config.FromEnv(func(string) string { return "" }, false)
	require.NoError(t, err)
	w, err := world.Start(ctx, world.Options{Config: cfg, DatabaseURL: srv.URL, Logger: slog.New(slog.DiscardHandler), Clinics: 50, Seed: 7})
	require.NoError(t, err)
	defer w.Close()

	const birth = "1990-08-13" // digit 3: open in the demo campaign
	token := w.IdPs["pass"].Issue(sim.TokenClaims{Person: "browser-citizen", Birthdate: birth, Phone: "+821023456789", Device: "browser", Nonce: 1})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(w.BaseURL+"/?lang=en"),
		chromedp.WaitVisible(chromedp.CSS("#submit")),
		chromedp.SetValue(chromedp.CSS("#provider"), "pass"),
		chromedp.SetValue(chromedp.CSS("#identity_token"), token),
		chromedp.SetValue(chromedp.CSS("#birthdate"), birth),
		chromedp.SetValue(chromedp.CSS("#phone"), "010-2345-6789"),
		chromedp.SetValue(chromedp.CSS("#region"), "11680"),
		// A click, as a person would: form.submit() would skip the
		// page's submit handler.
		chromedp.Click(chromedp.CSS("#submit button[type=submit]")),
		// The answer, not the "Sending…" the page shows (as .ok) while
		// it waits: a 202 fills the lookup form's receipt, anything else
		// marks the result .err.
		chromedp.Poll[chromedp.Void](`document.getElementById("receipt").value !== "" || document.querySelector("#submit-result.err") !== null`),
	))
	submitted, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#submit-result")))
	require.NoError(t, err)
	require.Contains(t, submitted, "Your receipt:", "the page answered: %s", submitted)
	receipt := strings.TrimSpace(submitted[strings.LastIndex(submitted, ":")+1:])
	require.NotEmpty(t, receipt)

	// The page filled the lookup form; ask until the pipeline decided.
	var status string
	require.Eventually(t, func() bool {
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#lookup button[type=submit]")), chromedp.Sleep(200*time.Millisecond)); err != nil {
			return false
		}
		status, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#lookup-result")))
		return err == nil && strings.HasPrefix(status, "registered")
	}, time.Minute, 500*time.Millisecond, "status stayed %q", status)

	// The same receipt through the JSON API, and a wrong birth date is 404.
	resp, err := http.Get(w.BaseURL + "/v1/intents/" + receipt + "?birthdate=1990-08-14")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	if dir := os.Getenv("PREREG_SCREENSHOTS"); dir != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "citizen-page.png"), shot, 0o644))
	}
}
