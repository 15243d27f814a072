package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

func TestLoadgenDump(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "surge.jsonl")
	code, out := runCLI(t, nil, "loadgen", "--submissions", "300", "--seed", "5", "--dump", file)
	require.Equal(t, exitOK, code, out)
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		var line sim.DumpLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		require.Equal(t, "POST", line.Method)
		require.Equal(t, "/v1/intents", line.Path)
		require.Equal(t, "http://127.0.0.1:8080/v1/intents", line.URL)
		require.NotEmpty(t, line.Body)
		n++
	}
	require.Equal(t, 300, n)
}

func TestLoadgenSend(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"receipt":"r%d","status":"received"}`, k)
	}))
	t.Cleanup(srv.Close)
	code, out := runCLI(t, nil, "loadgen", "--target", srv.URL, "--submissions", "200", "--connections", "4", "--format", "json")
	require.Equal(t, exitOK, code, out)
	var rep world.LoadReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 200, rep.Submitted)
	require.Equal(t, 200, rep.Sent)
	require.Equal(t, 200, rep.Statuses["202"])
	require.Equal(t, int64(200), n.Load())
	require.Equal(t, "closed", rep.Mode)
	require.Positive(t, rep.Mismatches, "this server accepts what intake must refuse")
	require.Equal(t, sim.MixCounts(200)[sim.ClassFirst], rep.Mix["first"])
}

func TestLoadgenReceipts(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := n.Add(1); k%2 == 0 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"receipt":"r%d","status":"received"}`, n.Load())
	}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "receipts.jsonl")
	code, out := runCLI(t, nil, "loadgen", "--target", srv.URL, "--submissions", "100", "--connections", "1", "--receipts", file, "--format", "json")
	require.Equal(t, exitOK, code, out)
	var rep world.LoadReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l sim.ReceiptLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		require.NotEmpty(t, l.Receipt)
		require.False(t, seen[l.Receipt], "receipt written twice")
		seen[l.Receipt] = true
	}
	require.Equal(t, rep.Statuses["202"], len(seen), "one line per 202")
	require.Equal(t, 50, len(seen))
}

func TestLoadgenUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"rate and connections", []string{"loadgen", "--rate", "10", "--connections", "4"}, exitUsage},
		{"bad format", []string{"loadgen", "--format", "xml"}, exitUsage},
		{"no submissions", []string{"loadgen", "--submissions", "0"}, exitUsage},
		{"missing campaign file", []string{"loadgen", "--campaign", "/nonexistent.yaml", "--submissions", "10"}, exitFailure},
		{"remote target", []string{"loadgen", "--target", "http://192.0.2.1:8080", "--submissions", "10"}, exitFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCLI(t, nil, tc.args...)
			require.Equal(t, tc.code, code, out)
		})
	}
}
