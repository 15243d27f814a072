package main

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.VerifyMain(m, pgtest.IgnoreFastHTTP()...) }

// runCLI runs a prereg command line in process with the given environment
// and returns its exit code and output.
func runCLI(t testing.TB, vars map[string]string, args ...string) (int, string) {
	t.Helper()
	out := &syncBuffer{}
	env := &Env{Stdout: out, Stderr: out, Getenv: func(k string) string { return vars[k] }}
	code := run(env, args)
	return code, out.String()
}

// syncBuffer is a buffer that goroutines a command leaves behind (a NATS
// callback logging a disconnect, say) may still write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The invariants themselves are tested in package check; this holds the
// command to its flags and exit codes.
func TestCheckExitCodes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	vars := map[string]string{"DATABASE_URL": db.URL}
	code, out := runCLI(t, vars, "check", "--campaign", "covid-2021-18-49")
	require.Equal(t, exitFailure, code, "an unknown campaign is a failure:\n%s", out)
	require.Contains(t, out, "prereg campaign load")

	code, out = runCLI(t, vars, "campaign", "load", "../../campaigns/covid-2021-18-49.yaml")
	require.Equal(t, exitOK, code, out)
	code, out = runCLI(t, vars, "check", "--campaign", "covid-2021-18-49", "--format", "json")
	require.Equal(t, exitOK, code, out)
	var rep struct {
		OK bool `json:"ok"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.OK)

	// A registration no decision accounts for breaks invariant 1.
	addRegistrations(t, db, 1)
	code, out = runCLI(t, vars, "check", "--campaign", "covid-2021-18-49", "--settled")
	require.Equal(t, exitInvariant, code, out)
	require.Contains(t, out, "FAIL invariant 1:")
}

func TestCheckUsage(t *testing.T) {
	t.Parallel()
	code, _ := runCLI(t, nil, "check")
	require.Equal(t, exitUsage, code)
	code, _ = runCLI(t, nil, "check", "--campaign", "x", "--format", "xml")
	require.Equal(t, exitUsage, code)
}
