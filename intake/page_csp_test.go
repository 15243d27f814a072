package intake_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The citizen page carries a strict Content-Security-Policy and nosniff
// on both fronts, and still works under it: its only inline style is the
// one the policy names by hash, its script comes from a file, and nothing
// in the markup needs 'unsafe-inline' (no inline script, no style or
// event-handler attribute). No browser runs here; CI's browser tests load
// the page under the same header.
func TestPageSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	for _, base := range []string{e.url, e.stdURL} {
		for _, lang := range []string{"ko", "en"} {
			resp, err := http.Get(base + "/?lang=" + lang)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			page := string(b)
			csp := resp.Header.Get("Content-Security-Policy")
			require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			require.NotContains(t, csp, "unsafe-inline")
			require.NotContains(t, csp, "unsafe-eval")
			require.Contains(t, csp, "default-src 'self'")
			require.Contains(t, csp, "script-src 'self'")
			require.Contains(t, csp, "frame-ancestors 'none'")

			styles := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(page, -1)
			require.Len(t, styles, 1, "one inline style block")
			sum := sha256.Sum256([]byte(styles[0][1]))
			require.Contains(t, csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", "the policy allows the page's own style block")

			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
				require.Contains(t, m, `src="/assets/`, "every script is a file of this origin")
			}
			require.NotRegexp(t, `(?i)\sstyle=`, page, "a style attribute needs 'unsafe-inline'")
			require.NotRegexp(t, `(?i)\son[a-z]+=`, page, "an event-handler attribute needs 'unsafe-inline'")
		}
		resp, err := http.Get(base + "/assets/intake.js")
		require.NoError(t, err)
		js, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		for _, forbidden := range []string{"eval(", "new Function", "setAttribute('style'", `setAttribute("style"`, "innerHTML"} {
			require.False(t, strings.Contains(string(js), forbidden), "the script uses %s, which the policy forbids or makes unsafe", forbidden)
		}
	}
}
