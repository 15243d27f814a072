package dedupe_test

import (
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

// The HTML report is served with a strict Content-Security-Policy and
// nosniff, and renders under it: its one inline style block is the one
// the policy allows by hash, and no style attribute (which would need
// 'unsafe-inline') draws its bars.
func TestReportSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := loadCampaign(t, e.campaigns, 2, 1, 100)
	w := &world{campaign: c, outcomes: []prereg.Outcome{
		outcome(c.ID, "r1", "alice", "shared", 1),
		outcome(c.ID, "r2", "alice", "alice-phone", 2),
		outcome(c.ID, "r3", "bob", "shared", 3),
	}}
	w.publish(t, e.js.JS)
	e.startWorker(t, e.js.JS, dedupe.Config{})
	e.waitDecisions(t, c.ID, len(w.outcomes))

	a := &dedupe.Admin{Store: e.store, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	rec := httptest.NewRecorder()
	a.ServeReport(rec, httptest.NewRequest(http.MethodGet, "/admin/v1/reports/dedupe?format=html&campaign="+c.ID, nil))
	require.Equal(t, http.StatusOK, rec.Code)
	h := rec.Header()
	require.Equal(t, "text/html; charset=utf-8", h.Get("Content-Type"))
	require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	csp := h.Get("Content-Security-Policy")
	require.NotContains(t, csp, "unsafe-inline")
	require.Contains(t, csp, "frame-ancestors 'none'")

	page := rec.Body.String()
	styles := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(page, -1)
	require.Len(t, styles, 1)
	sum := sha256.Sum256([]byte(styles[0][1]))
	require.Contains(t, csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	require.NotRegexp(t, `(?i)\sstyle=`, page)
	require.NotContains(t, page, "<script")
	require.Regexp(t, `class="bar w\d+"`, page, "bars are drawn by width classes")

	rec = httptest.NewRecorder()
	a.ServeReport(rec, httptest.NewRequest(http.MethodGet, "/admin/v1/reports/dedupe?format=json&campaign="+c.ID, nil))
	require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	require.Empty(t, rec.Header().Get("Content-Security-Policy"), "only HTML answers need a policy")
}
