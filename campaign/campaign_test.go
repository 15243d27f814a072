package campaign_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
)

func TestLoadExampleCampaigns(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../campaigns/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		c, err := campaign.LoadFile(f)
		require.NoError(t, err, f)
		require.NotEmpty(t, c.Windows, f)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := campaign.Parse([]byte(minimal), "")
	require.NoError(t, err)
	require.Equal(t, campaign.DefaultShards, c.Shards)
	require.Equal(t, campaign.DefaultDeviceCap, c.DeviceCap)
	require.Equal(t, campaign.DefaultPhoneCap, c.Limits.PhoneCap)
	require.Equal(t, campaign.DefaultBloomFPRate, c.Dedupe.BloomFPRate)
	require.Equal(t, "Asia/Seoul", c.Location.String())
	require.Len(t, c.Schedule.Bands, 3)
	// "2021-08-09 20:00" is read in the campaign's zone.
	require.Equal(t, time.Date(2021, 8, 9, 11, 0, 0, 0, time.UTC), c.Windows[0].Opens.UTC())
}

const minimal = `
id: t
cohort: {born_from: 1972-01-01, born_to: 2003-12-31}
windows:
  - {id: d9, opens: "2021-08-09 20:00", closes: "2021-08-10 18:00", digits: [9]}
providers:
  - {name: pass, url: "http://127.0.0.1:9"}
schedule: {start: 2021-08-26, days: 14}
`

// Errors name the line and the field, and every problem is listed at once.
func TestValidationErrorsNameLineAndField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", minimal + "shardz: 3\n", []string{"line 9:", "shardz"}},
		{"digit out of range", strings.Replace(minimal, "digits: [9]", "digits: [9, 12]", 1), []string{"line 5: windows[0].digits[1]: digit 12 is not 0-9"}},
		{"closes before opens", strings.Replace(minimal, `closes: "2021-08-10 18:00"`, `closes: "2021-08-08 18:00"`, 1), []string{"line 5: windows[0].closes: closes must be after opens"}},
		{"bad provider url", strings.Replace(minimal, `"http://127.0.0.1:9"`, `"ftp://x"`, 1) + "", []string{"line 7: providers[0].url"}},
		{"cohort reversed", strings.Replace(minimal, "born_to: 2003-12-31", "born_to: 1960-12-31", 1), []string{"line 3: cohort.born_to: born_to is before born_from"}},
		{"catch-up with digits", strings.Replace(minimal, "digits: [9]", "digits: [9], catch_up: true", 1), []string{"windows[0].digits: a catch-up window admits every digit"}},
		{"no windows", strings.Replace(minimal, `  - {id: d9, opens: "2021-08-09 20:00", closes: "2021-08-10 18:00", digits: [9]}`+"\n", "", 1), []string{"windows"}},
		{"bad band", strings.Replace(minimal, "days: 14}", "days: 14, bands: [\"12:00-09:00\"]}", 1), []string{"line 8: schedule.bands[0]"}},
		{"phone cap below 1", minimal + "limits: {phone_cap: -1}\n", []string{"line 9: limits.phone_cap: want at least 1"}},
		{"not yaml", "id: [", []string{"(file)"}},
		{"empty", "", []string{"empty file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := campaign.Parse([]byte(tc.yaml), "")
			var ve *campaign.ValidationError
			require.True(t, errors.As(err, &ve), "want a ValidationError, got %v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestClinicsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "clinics.csv"), []byte("id,name,region,lat,lng,capacity\nc1,One,11680,37.5,127.0,10\nc2,Two,26350,35.1,129.1,5\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(minimal+"clinics_file: clinics.csv\n"), 0o644))
	c, err := campaign.LoadFile(filepath.Join(dir, "c.yaml"))
	require.NoError(t, err)
	require.Len(t, c.Clinics, 2)
	require.Equal(t, 5, c.Clinics[1].Capacity)
	require.Empty(t, c.Spec.ClinicsFile, "clinics are stored in their own table, not in the spec")
}

func date(s string) time.Time {
	t, err := campaign.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// 10부제: the digit is the last digit of the day of birth, for every digit
// and for 29 February.
func TestWindowsByDigit(t *testing.T) {
	t.Parallel()
	c, err := campaign.LoadFile("../campaigns/covid-2021-18-49.yaml")
	require.NoError(t, err)
	seoul := c.Location
	for day := 1; day <= 31; day++ {
		birth := time.Date(1990, 1, day, 0, 0, 0, 0, time.UTC)
		digit := day % 10
		// Window dD opens at 20:00 on the August day whose last digit is D.
		openDay := 9 + (digit+1)%10
		opens := time.Date(2021, 8, openDay, 20, 0, 0, 0, seoul)
		w, ok := c.OpenWindow(birth, opens)
		require.True(t, ok, "day %d at its opening second", day)
		require.Equal(t, digit, w.Digits[0])
		_, ok = c.OpenWindow(birth, opens.Add(-time.Second))
		require.False(t, ok, "day %d a second before its window", day)
		closes := time.Date(2021, 8, openDay+1, 18, 0, 0, 0, seoul)
		_, ok = c.OpenWindow(birth, closes.Add(-time.Second))
		require.True(t, ok, "day %d at the last second", day)
		_, ok = c.OpenWindow(birth, closes)
		require.False(t, ok, "day %d at the closing second (closes is exclusive)", day)
		next, ok := c.NextWindow(birth, opens.Add(-time.Hour))
		require.True(t, ok)
		require.Equal(t, w.ID, next.ID)
	}
	leap := date("1992-02-29")
	require.Equal(t, 9, campaign.Digit(leap))
	w, ok := c.OpenWindow(leap, time.Date(2021, 8, 9, 20, 0, 0, 0, seoul))
	require.True(t, ok)
	require.Equal(t, "d9", w.ID)
	// The catch-up window admits every digit.
	w, ok = c.OpenWindow(date("1990-01-03"), time.Date(2021, 8, 20, 12, 0, 0, 0, seoul))
	require.True(t, ok)
	require.True(t, w.CatchUp)
}

func TestCohort(t *testing.T) {
	t.Parallel()
	c, err := campaign.Parse([]byte(minimal), "")
	require.NoError(t, err)
	require.True(t, c.Cohort.Contains(date("1972-01-01")))
	require.True(t, c.Cohort.Contains(date("2003-12-31")))
	require.False(t, c.Cohort.Contains(date("1971-12-31")))
	require.False(t, c.Cohort.Contains(date("2004-01-01")))
}

// FuzzParse: no input makes the parser panic, and whatever it accepts is
// valid by its own rules.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/valid.yaml")
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte(minimal))
	f.Add([]byte("id: x\nwindows: [{digits: [99]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := campaign.Parse(data, "")
		if err != nil {
			return
		}
		require.NotEmpty(t, c.Windows)
		for _, w := range c.Windows {
			require.True(t, w.Closes.After(w.Opens))
		}
		_, err = campaign.FromFile(c.Spec)
		require.NoError(t, err, "a stored spec revalidates")
	})
}

// The phone cap is read from the file, kept in the stored spec and read
// back from it.
func TestPhoneCap(t *testing.T) {
	t.Parallel()
	c, err := campaign.Parse([]byte(minimal+"limits: {phone_cap: 2}\n"), "")
	require.NoError(t, err)
	require.Equal(t, 2, c.Limits.PhoneCap)
	spec, err := c.Spec.MarshalSpec()
	require.NoError(t, err)
	require.Contains(t, string(spec), `"limits":{"phone_cap":2}`)
	back, err := campaign.FromFile(c.Spec)
	require.NoError(t, err)
	require.Equal(t, 2, back.Limits.PhoneCap)
}
