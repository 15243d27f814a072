package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The sign-in page lists synthetic people; signing in as one sends the
// browser back with a token in the fragment that the provider's verify
// answer reports bound to the campaign and device, for LoginTTL.
func TestLoginIssuesBoundToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	p := NewIdP("pass", []byte("secret"), []byte("ci"))
	p.Now = func() time.Time { return now }
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"campaign": {"c1"}, "device": {"dev-1"}, "redirect_uri": {"http://prereg.test/?lang=en"}, "state": {"st"}}

	resp, err := client.Get(srv.URL + "/login?" + q.Encode() + "&lang=en")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), "Kim Haneul")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "form-action 'self' http://prereg.test")

	cases := []struct {
		name   string
		form   url.Values
		person LoginPerson
	}{
		{"listed", url.Values{"person": {"0"}}, DemoLoginPeople[0]},
		{"typed", url.Values{"person": {"typed"}, "typed_birthdate": {"1991-02-03"}, "typed_phone": {"010-9999-0000"}},
			LoginPerson{Birthdate: "1991-02-03", Phone: "010-9999-0000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range q {
				form[k] = v
			}
			for k, v := range tc.form {
				form[k] = v
			}
			resp, err := client.PostForm(srv.URL+"/login", form)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			loc, err := url.Parse(resp.Header.Get("Location"))
			require.NoError(t, err)
			require.Equal(t, "prereg.test", loc.Host)
			require.Equal(t, "lang=en", loc.RawQuery, "the token travels in the fragment, not the query")
			frag, err := url.ParseQuery(loc.Fragment)
			require.NoError(t, err)
			require.Equal(t, "st", frag.Get("state"))
			require.Equal(t, "pass", frag.Get("provider"))

			vr, err := http.Post(srv.URL+"/v1/verify", "application/json", strings.NewReader(`{"token":"`+frag.Get("token")+`"}`))
			require.NoError(t, err)
			var got VerifyResponse
			require.NoError(t, json.NewDecoder(vr.Body).Decode(&got))
			vr.Body.Close()
			require.Equal(t, tc.person.Birthdate, got.Birthdate)
			require.Equal(t, phoneE164(tc.person.Phone), got.Phone)
			require.Equal(t, "c1", got.Campaign)
			require.Equal(t, "dev-1", got.Device)
			require.True(t, got.Expires.Equal(now.Add(LoginTTL)), "expires %s", got.Expires)
		})
	}

	// Without what binds the token, or with a redirect that is not an
	// absolute http(s) address, there is no sign-in.
	for _, bad := range []url.Values{
		{"campaign": {"c1"}, "device": {"d"}, "state": {"s"}, "redirect_uri": {"javascript:alert(1)"}},
		{"campaign": {"c1"}, "state": {"s"}, "redirect_uri": {"http://prereg.test/"}},
	} {
		resp, err := client.Get(srv.URL + "/login?" + bad.Encode())
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
}

// An app's token (no campaign claim) is bound to nothing: its verify
// answer names no campaign, device or expiry.
func TestAppTokenIsUnbound(t *testing.T) {
	t.Parallel()
	p := NewIdP("pass", []byte("secret"), []byte("ci"))
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	tok := p.Issue(TokenClaims{Person: "x", Birthdate: "1990-01-01", Phone: "+821000000000", Device: "d", Nonce: 1})
	vr, err := http.Post(srv.URL+"/v1/verify", "application/json", strings.NewReader(`{"token":"`+tok+`"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(vr.Body)
	vr.Body.Close()
	require.NotContains(t, string(body), "campaign")
	require.NotContains(t, string(body), "expires")
}
