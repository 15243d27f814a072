package config_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

// A JSON line carries the same attributes, under the same keys, as the
// text line of the same record: a collector parsing either finds the same
// fields.
func TestNewLoggerJSONCarriesTheTextAttributes(t *testing.T) {
	t.Parallel()
	write := func(format string) string {
		var out bytes.Buffer
		log := config.NewLogger(&out, env(map[string]string{"PREREG_LOG_FORMAT": format, "PREREG_LOG_LEVEL": "debug"}))
		log.With(slog.String("role", "verify")).Debug("provider call",
			slog.String("provider", "pass"), slog.Int("attempt", 3), slog.Duration("took", 1500000), slog.Bool("breaker_open", false))
		return out.String()
	}
	text, js := write("text"), write("json")
	require.Equal(t, 1, strings.Count(js, "\n"), "one JSON object a line: %s", js)

	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(js), &rec), "a JSON line: %s", js)
	require.Equal(t, map[string]any{
		"level": "DEBUG", "msg": "provider call", "role": "verify", "provider": "pass",
		"attempt": 3.0, "took": 1.5e6, "breaker_open": false, // a duration in nanoseconds, as slog's JSON handler writes it
	}, withoutTime(t, rec))
	// The text line of the same record has exactly those keys.
	var keys []string
	for _, field := range strings.Fields(strings.Replace(text, `"provider call"`, "call", 1)) {
		k, _, ok := strings.Cut(field, "=")
		require.True(t, ok, "text field %q", field)
		keys = append(keys, k)
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(rec)), keys, "text line: %s", text)
}

func withoutTime(t *testing.T, rec map[string]any) map[string]any {
	t.Helper()
	require.Contains(t, rec, "time")
	out := maps.Clone(rec)
	delete(out, "time")
	return out
}

func TestNewLoggerFormatAndLevel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		vars   map[string]string
		json   bool
		debugs bool
	}{
		{name: "default text at info", vars: map[string]string{}},
		{name: "json", vars: map[string]string{"PREREG_LOG_FORMAT": " json "}, json: true},
		{name: "json at debug", vars: map[string]string{"PREREG_LOG_FORMAT": "json", "PREREG_LOG_LEVEL": "debug"}, json: true, debugs: true},
		{name: "a bad format is text here and an error from FromEnv", vars: map[string]string{"PREREG_LOG_FORMAT": "xml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			log := config.NewLogger(&out, env(tc.vars))
			log.Debug("hidden unless debug")
			log.Info("shown")
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			require.Len(t, lines, map[bool]int{true: 2, false: 1}[tc.debugs], out.String())
			require.Equal(t, tc.json, json.Valid([]byte(lines[0])), lines[0])
		})
	}
}

func TestParseLogFormat(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{"": "text", "text": "text", "json": "json"} {
		got, err := config.ParseLogFormat(v)
		require.NoError(t, err, v)
		require.Equal(t, want, got, v)
	}
	_, err := config.ParseLogFormat("JSON lines")
	require.ErrorContains(t, err, "want text or json")
	_, err = config.FromEnv(env(map[string]string{"PREREG_LOG_FORMAT": "xml"}), false)
	require.ErrorContains(t, err, "PREREG_LOG_FORMAT:")
}
