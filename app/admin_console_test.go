package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/console"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
)

// The console's page and assets need no token and carry the strict
// policy; whoami names the caller's role; the pipeline's samples are
// there at once and count the campaign; an operator's pause and resume
// are audited and show in the next sample, an auditor's are refused.
func TestConsole(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	c, err := campaign.LoadFile("../intake/testdata/campaign.yaml")
	require.NoError(t, err)
	_, err = (&postgres.CampaignStore{Pool: e.db.Pool}).Load(ctx, c)
	require.NoError(t, err)

	for _, tc := range []struct{ path, ctype string }{
		{"/admin/", "text/html"}, {"/admin/assets/console.js", "text/javascript"}, {"/admin/assets/console.css", "text/css"},
	} {
		resp, err := http.Get(e.url + tc.path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, tc.path)
		require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype), "%s: %s", tc.path, resp.Header.Get("Content-Type"))
		if tc.ctype == "text/html" {
			require.Equal(t, httpapi.HTMLPolicy(), resp.Header.Get("Content-Security-Policy"), "no inline style or script")
		}
	}
	code, _ := e.do(t, "GET", "/admin/assets/other.js", "", "")
	require.Equal(t, http.StatusNotFound, code)

	code, b := e.do(t, "GET", "/admin/v1/whoami", auditorToken, "")
	require.Equal(t, http.StatusOK, code)
	var who map[string]string
	require.NoError(t, json.Unmarshal(b, &who))
	require.Equal(t, "auditor", who["role"])
	require.Regexp(t, `^[0-9a-f]{12}$`, who["token_id"])

	code, b = e.do(t, "POST", "/admin/v1/campaigns/test-2021/pause", auditorToken, `{}`)
	require.Equal(t, http.StatusForbidden, code, string(b))
	code, b = e.do(t, "POST", "/admin/v1/campaigns/test-2021/pause", operatorToken, `{"reopens_at":"2000-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusBadRequest, code, "a reopening time in the past: %s", b)
	code, b = e.do(t, "POST", "/admin/v1/campaigns/nope/pause", operatorToken, `{}`)
	require.Equal(t, http.StatusNotFound, code, string(b))
	reopens := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	code, b = e.do(t, "POST", "/admin/v1/campaigns/test-2021/pause", operatorToken, `{"reopens_at":"`+reopens.Format(time.RFC3339)+`"}`)
	require.Equal(t, http.StatusOK, code, string(b))

	var got struct {
		Every   float64          `json:"every_seconds"`
		Samples []console.Sample `json:"samples"`
	}
	require.Eventually(t, func() bool {
		code, b = e.do(t, "GET", "/admin/v1/pipeline", auditorToken, "")
		require.Equal(t, http.StatusOK, code, string(b))
		require.NoError(t, json.Unmarshal(b, &got))
		if len(got.Samples) == 0 {
			return false
		}
		cc, ok := got.Samples[len(got.Samples)-1].Campaigns["test-2021"]
		return ok && cc.Pause != nil
	}, 10*time.Second, 100*time.Millisecond, "a sample that shows the pause")
	require.Equal(t, console.DefaultEvery.Seconds(), got.Every)
	last := got.Samples[len(got.Samples)-1]
	cc := last.Campaigns["test-2021"]
	require.Equal(t, reopens, cc.Pause.ReopensAt.UTC())
	require.Len(t, cc.Windows, len(c.Windows))
	require.Empty(t, last.Errors)

	code, b = e.do(t, "GET", "/admin/v1/pipeline?since="+itoa(last.At.UnixMilli()), operatorToken, "")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(b, &got))
	for _, s := range got.Samples {
		require.True(t, s.At.After(last.At), "since: only later samples")
	}

	code, b = e.do(t, "POST", "/admin/v1/campaigns/test-2021/resume", operatorToken, "")
	require.Equal(t, http.StatusOK, code, string(b))
	require.Contains(t, string(b), `"resumed":true`)

	code, b = e.do(t, "GET", "/admin/v1/audit", auditorToken, "")
	require.Equal(t, http.StatusOK, code)
	var audit struct{ Entries []httpapi.AuditEntry }
	require.NoError(t, json.Unmarshal(b, &audit))
	var actions []string
	for _, a := range audit.Entries {
		actions = append(actions, a.Action+" "+a.Target+" "+a.Outcome)
	}
	require.Equal(t, []string{
		"intake.resume campaign=test-2021 200",
		"intake.pause campaign=test-2021 reopens_at=" + reopens.Format(time.RFC3339) + " 200",
		"intake.pause campaign=nope 404",
		"intake.pause campaign=test-2021 reopens_at=2000-01-01T00:00:00Z 400",
	}, actions)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The bulk review checks its body, reviews each receipt on its own and
// says what became of each; it is one audited action.
func TestHeldBulkReview(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	for _, body := range []string{
		`{"campaign":"c","review":"released","receipts":["r1"],"count":2}`,
		`{"campaign":"c","review":"maybe","receipts":["r1"],"count":1}`,
		`{"campaign":"c","review":"rejected","receipts":[],"count":0}`,
		`{"review":"rejected","receipts":["r1"],"count":1}`,
	} {
		code, b := e.do(t, "POST", "/admin/v1/held/review", operatorToken, body)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", body, b)
	}
	code, b := e.do(t, "POST", "/admin/v1/held/review", auditorToken, `{"campaign":"c","review":"rejected","receipts":["r1"],"count":1}`)
	require.Equal(t, http.StatusForbidden, code, string(b))
	code, b = e.do(t, "POST", "/admin/v1/held/review", operatorToken, `{"campaign":"c","review":"rejected","receipts":["r1","r2"],"count":2}`)
	require.Equal(t, http.StatusOK, code, string(b))
	var got struct {
		Done    int `json:"done"`
		Results []struct{ Receipt, Error string }
	}
	require.NoError(t, json.Unmarshal(b, &got))
	require.Zero(t, got.Done)
	require.Len(t, got.Results, 2)
	require.Equal(t, "not_found", got.Results[1].Error)

	code, b = e.do(t, "GET", "/admin/v1/audit?action=held.review_bulk", auditorToken, "")
	require.Equal(t, http.StatusOK, code)
	var audit struct{ Entries []httpapi.AuditEntry }
	require.NoError(t, json.Unmarshal(b, &audit))
	require.Len(t, audit.Entries, 5, "every operator's attempt, refused or not")
	require.Equal(t, "campaign=c review=rejected count=2", audit.Entries[0].Target)
	require.Equal(t, "200", audit.Entries[0].Outcome)
}
