package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/notify"
)

func TestClassifyByteEdges(t *testing.T) {
	t.Parallel()
	hangul := func(n int) string { return strings.Repeat("가", n) }
	tests := []struct {
		name  string
		body  string
		bytes int
		typ   notify.Type
		err   bool
	}{
		{"ascii at the SMS limit", strings.Repeat("a", 90), 90, notify.TypeSMS, false},
		{"ascii one over the SMS limit", strings.Repeat("a", 91), 91, notify.TypeLMS, false},
		{"45 Hangul syllables are 90 bytes", hangul(45), 90, notify.TypeSMS, false},
		{"46 Hangul syllables are 92 bytes", hangul(46), 92, notify.TypeLMS, false},
		{"44 Hangul and 2 ascii at the limit", hangul(44) + "ab", 90, notify.TypeSMS, false},
		{"44 Hangul and 3 ascii over it", hangul(44) + "abc", 91, notify.TypeLMS, false},
		{"a syllable outside KS X 1001 still counts two bytes", strings.Repeat("똠", 45), 90, notify.TypeSMS, false},
		{"1000 Hangul syllables are the LMS limit", hangul(1000), 2000, notify.TypeLMS, false},
		{"one byte over the LMS limit", hangul(1000) + "a", 0, "", true},
		{"one syllable over the LMS limit", hangul(1001), 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := notify.Classify(tc.body)
			if tc.err {
				require.ErrorIs(t, err, notify.ErrTooLong)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.bytes, got.Bytes, "EUC-KR length")
			require.Equal(t, tc.typ, got.Type)
		})
	}
}

func testCampaign(tb testing.TB, lang, clinicName string) *campaign.Campaign {
	tb.Helper()
	c, err := campaign.Parse([]byte(`id: render-test
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows: [{id: w1, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [9]}]
providers: [{name: pass, url: "http://127.0.0.1:1"}]
schedule: {start: 2021-08-26, days: 14, bands: ["09:00-12:00", "13:00-15:00"]}
notify: {status_url: "https://prereg.example.kr/", language: `+lang+`}
`), ".")
	require.NoError(tb, err)
	return c
}

func TestRender(t *testing.T) {
	t.Parallel()
	day := time.Date(2021, 8, 26, 0, 0, 0, 0, time.UTC) // a Thursday
	tests := []struct {
		name   string
		lang   string
		clinic string
		want   []string
		typ    notify.Type
	}{
		{"korean short clinic name fits an SMS", "ko", "강남구보건소", []string{"8/26(목)", "13:00-15:00", "강남구보건소", "https://prereg.example.kr/"}, notify.TypeSMS},
		{"korean long clinic name needs an LMS", "ko", strings.Repeat("서울특별시", 6) + "예방접종센터", []string{"8/26(목)", "예방접종센터"}, notify.TypeLMS},
		{"english", "en", "Gangnam-gu Health Center", []string{"Thu 26 Aug", "13:00-15:00", "Gangnam-gu Health Center", "https://prereg.example.kr/"}, notify.TypeLMS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testCampaign(t, tc.lang, tc.clinic)
			got, err := notify.Render(c, notify.Appointment{Clinic: tc.clinic, Day: day, Band: 1})
			require.NoError(t, err)
			for _, w := range tc.want {
				require.Contains(t, got.Body, w)
			}
			require.Equal(t, tc.typ, got.Type, "%d bytes", got.Bytes)
			require.Equal(t, notify.EUCKRLen(got.Body), got.Bytes)
		})
	}
}

// The template's fixed part decides how long a clinic name an SMS can
// carry: find the edge and check both sides of it.
func TestRenderAtTheSMSEdge(t *testing.T) {
	t.Parallel()
	c := testCampaign(t, "ko", "")
	day := time.Date(2021, 8, 26, 0, 0, 0, 0, time.UTC)
	fixed, err := notify.Render(c, notify.Appointment{Clinic: "", Day: day, Band: 0})
	require.NoError(t, err)
	room := notify.SMSMaxBytes - fixed.Bytes
	require.Positive(t, room)
	name := strings.Repeat("가", room/2) + strings.Repeat("a", room%2)
	at, err := notify.Render(c, notify.Appointment{Clinic: name, Day: day, Band: 0})
	require.NoError(t, err)
	require.Equal(t, notify.SMSMaxBytes, at.Bytes)
	require.Equal(t, notify.TypeSMS, at.Type)
	over, err := notify.Render(c, notify.Appointment{Clinic: name + "a", Day: day, Band: 0})
	require.NoError(t, err)
	require.Equal(t, notify.SMSMaxBytes+1, over.Bytes)
	require.Equal(t, notify.TypeLMS, over.Type)

	_, err = notify.Render(c, notify.Appointment{Clinic: strings.Repeat("가", 1000), Day: day, Band: 0})
	require.ErrorIs(t, err, notify.ErrTooLong)
	_, err = notify.Render(c, notify.Appointment{Clinic: "x", Day: day, Band: 5})
	require.Error(t, err, "a band the campaign does not have")
}
