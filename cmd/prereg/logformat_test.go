package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
)

// PREREG_LOG_FORMAT=json makes the process's own logger write JSON lines
// with the attributes of the text lines: here the settings serve logs at
// its start, before it refuses to run without NATS_URL.
func TestRunLogsJSONWhenAsked(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			vars := map[string]string{
				"PREREG_LOG_FORMAT": format,
				"PREREG_HMAC_KEY":   "k1:ngmfcs4kiRjoLiy4C9scm3O3Y3Pdsm9JjWt2gMnl/ic=",
				"PREREG_ENC_KEY":    "e1:tKyaa4+6sd1i0QlQVnnnjfRchFY/wS5/Rvx7ZCzGnQg=",
			}
			env := &Env{Stdout: io.Discard, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
			require.Equal(t, exitFailure, run(env, []string{"serve"}))

			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			require.Contains(t, lines[len(lines)-1], "NATS_URL is not set", "the command's error, as the CLI prints it")
			settings := lines[:len(lines)-1]
			require.Len(t, settings, len(config.Settings()), "one line per setting")
			for _, line := range settings {
				if format == "text" {
					require.False(t, json.Valid([]byte(line)), line)
					for _, k := range []string{"time=", "level=INFO", "msg=setting", "name=", "value=", "source="} {
						require.Contains(t, line, k)
					}
					continue
				}
				var rec map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
				require.Equal(t, "setting", rec["msg"])
				require.Equal(t, "INFO", rec["level"])
				for _, k := range []string{"time", "name", "value", "source"} {
					require.Contains(t, rec, k, line)
				}
				if rec["name"] == "PREREG_HMAC_KEY" {
					require.Equal(t, "(redacted)", rec["value"])
				}
			}
		})
	}
}
