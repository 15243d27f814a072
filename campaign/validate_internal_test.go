package campaign

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fields lists the field paths of the problems found, in order.
func fields(p *problems) []string {
	var out []string
	for _, fe := range p.errs {
		out = append(out, fe.Field)
	}
	return out
}

func TestValidateDigits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fw   FileWindow
		want []string
	}{
		{"digits listed once each", FileWindow{Digits: []int{0, 5, 9}}, nil},
		{"a catch-up window without digits", FileWindow{CatchUp: true}, nil},
		{"a catch-up window with digits", FileWindow{CatchUp: true, Digits: []int{1}}, []string{"windows[2].digits"}},
		{"neither digits nor catch-up", FileWindow{}, []string{"windows[2].digits"}},
		{"a digit out of range and one twice", FileWindow{Digits: []int{3, 10, 3}}, []string{"windows[2].digits[1]", "windows[2].digits[2]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &problems{}
			validateDigits(p, 2, tc.fw)
			require.Equal(t, tc.want, fields(p))
		})
	}
}

func TestValidateProviderDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fp   FileProvider
		want Provider
		errs []string
	}{
		{
			name: "defaults",
			fp:   FileProvider{Name: "pass", URL: "https://idp.example"},
			want: Provider{Name: "pass", URL: "https://idp.example", Timeout: 5 * time.Second, Concurrency: 32, Burst: 32, LoginURL: "https://idp.example/login"},
		},
		{
			name: "as given",
			fp:   FileProvider{Name: "pass", URL: "http://idp.example", Timeout: "2s", Concurrency: 4, Rate: 10, Burst: 2, LoginURL: "https://login.idp.example/start"},
			want: Provider{Name: "pass", URL: "http://idp.example", Timeout: 2 * time.Second, Concurrency: 4, Rate: 10, Burst: 2, LoginURL: "https://login.idp.example/start"},
		},
		{
			name: "every limit wrong",
			fp:   FileProvider{Name: "pass", URL: "ftp://idp.example", Timeout: "-1s", Concurrency: -1, Rate: -1, Burst: -1, LoginURL: "javascript:x"},
			want: Provider{Name: "pass", URL: "ftp://idp.example", Timeout: -time.Second, Concurrency: -1, Rate: -1, Burst: -1, LoginURL: "javascript:x"},
			errs: []string{"providers[1].url", "providers[1].login_url", "providers[1].timeout", "providers[1].concurrency", "providers[1].rate", "providers[1].burst"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &problems{}
			require.Equal(t, tc.want, validateProvider(p, 1, tc.fp))
			require.Equal(t, tc.errs, fields(p))
		})
	}
}
