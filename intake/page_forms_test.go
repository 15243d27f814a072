package intake_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// postForm posts a form as a browser without JavaScript does and returns
// status and page.
func postForm(tb testing.TB, base, path string, f url.Values, headers ...string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(f.Encode()))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(tb, err)
	return res.StatusCode, res.Header, string(b)
}

var receiptInPage = regexp.MustCompile(`<span class="receipt">([A-Za-z0-9_-]+)</span>`)

// Without JavaScript the page still submits and looks up: its forms post
// to /submit and /lookup, which answer with the page, the answer in it in
// the page's language, under the same policy; the same form posted again
// (its hidden device id and key) is the same receipt; the birth date
// never appears in a URL.
func TestPageFormsWithoutScript(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	form := url.Values{
		"campaign": {"test-2021"}, "lang": {"en"}, "provider": {"pass"}, "identity_token": {"tok-abc.def"},
		"birthdate": {"1990-08-19"}, "phone": {"010-1234-5678"}, "region": {"11680"},
		"device_id": {"form-device"}, "idempotency_key": {"form-key-1"},
	}
	for _, base := range []string{e.url, e.stdURL} {
		status, h, page := postForm(t, base, "/submit", form)
		require.Equal(t, http.StatusOK, status, page)
		require.Contains(t, h.Get("Content-Security-Policy"), "script-src 'self'")
		require.Equal(t, "no-store", h.Get("Cache-Control"))
		require.Contains(t, page, "Received. Your receipt:")
		m := receiptInPage.FindStringSubmatch(page)
		require.NotNil(t, m, "the page shows the receipt")
		receipt := m[1]
		require.Contains(t, page, `value="form-key-1"`, "the same key again on the page")

		status, _, again := postForm(t, base, "/submit", form)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, receipt, receiptInPage.FindStringSubmatch(again)[1], "a form posted twice is one submission")

		status, _, looked := postForm(t, base, "/lookup", url.Values{"lang": {"en"}, "receipt": {receipt}, "birthdate": {"1990-08-19"}})
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, looked, "received (being processed)")
		require.NotContains(t, looked, "birthdate=1990", "the birth date is never put in a URL")
	}

	// Refusals in words, in the page's language: field errors (Korean),
	// a closed window, a forged receipt.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("lang", "ko")
	bad.Set("phone", "12")
	bad.Set("idempotency_key", "form-key-2")
	status, _, page := postForm(t, e.url, "/submit", bad)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, page, "입력을 확인하세요.")
	require.Contains(t, page, "휴대전화 번호를 확인하세요")
	require.Contains(t, page, `value="12"`, "the form keeps what was typed")

	closed := url.Values{}
	for k, v := range form {
		closed[k] = v
	}
	closed.Set("birthdate", "1990-08-10")
	closed.Set("idempotency_key", "form-key-3")
	status, _, page = postForm(t, e.url, "/submit", closed)
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, page, "The window for this date of birth is not open now.")
	require.Contains(t, page, "Your window:")

	status, _, page = postForm(t, e.url, "/lookup", url.Values{"lang": {"ko"}, "receipt": {"forged"}, "birthdate": {"1990-08-19"}})
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, page, "접수번호 또는 생년월일이 맞지 않습니다.")
}
