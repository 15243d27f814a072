package scheduler_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

// childEnv names the database a re-executed test binary allocates in,
// slowly, until the parent kills it.
const childEnv = "SCHEDULER_TEST_CHILD_DATABASE_URL"

// childApp is the application_name of the child's sessions.
const childApp = "prereg-scheduler-test-child"

// runChild is the child process of TestResumeAfterSIGKILL: it allocates
// window d9 in chunks of 50 and, once a fifth is written, stops there
// (its writers park on the progress report) until the parent kills it, so
// that the kill always lands mid-run.
func runChild() int {
	ctx := context.Background()
	pool, err := postgres.Open(ctx, os.Getenv(childEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer pool.Close()
	// The parent's clock: the round the child freezes is the one an
	// uninterrupted run freezes.
	a := scheduler.New(&postgres.AllocationStore{Pool: pool}, scheduler.Config{ChunkSize: 50, Now: func() time.Time { return afterClose }})
	_, err = a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9", Progress: func(done, total int) {
		if done >= total/5 {
			select {}
		}
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func TestResumeAfterSIGKILL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 3000
	regs := crowd(n)
	setup := func() (*world, *scheduler.Allocator) {
		w := newWorld(t, 3, 2, seoul(80)) // 2,400 places for 3,000
		w.insert(t, regs)
		a := w.allocator(7, 50)
		w.commitSeed(t, a, "d9")
		return w, a
	}

	ref, refAlloc := setup()
	want, err := refAlloc.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
	require.NoError(t, err)
	require.Equal(t, 2400, want.Assigned)

	w, a := setup()
	var out lockedBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// The child's sessions are named, so that the parent can wait for
	// PostgreSQL to end them after the kill.
	sep := "?"
	if strings.Contains(w.db.URL, "?") {
		sep = "&"
	}
	cmd.Env = append(os.Environ(), childEnv+"="+w.db.URL+sep+"application_name="+childApp)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var done int
		require.NoError(c, w.db.Pool.QueryRow(ctx, `SELECT coalesce(max(done), 0) FROM allocation_runs WHERE NOT dry_run`).Scan(&done))
		require.GreaterOrEqual(c, done, n/5, "registrations the child wrote")
	}, 30*time.Second, 5*time.Millisecond, "the child wrote too little in 30 s: %s", &out)
	require.NoError(t, cmd.Process.Kill()) // SIGKILL
	require.Error(t, cmd.Wait())
	// A killed client's backend lives on (holding the campaign's lock)
	// until PostgreSQL notices the closed socket, at the end of the
	// statement it is running.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var alive int
		require.NoError(c, w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, childApp).Scan(&alive))
		require.Zero(c, alive, "sessions of the killed child")
	}, 30*time.Second, 5*time.Millisecond, "the killed child's sessions did not end")

	var state string
	var done, total int
	require.NoError(t, w.db.Pool.QueryRow(ctx, `SELECT state, done, total FROM allocation_runs WHERE NOT dry_run`).Scan(&state, &done, &total))
	require.Equal(t, "running", state)
	require.Less(t, done, total, "killed mid-run")
	w.checkInvariants(t) // every chunk written is whole

	// Nothing else may run on the campaign until the run is resumed.
	for _, req := range []scheduler.Request{
		{Campaign: campaignID, Window: "d9", DryRun: true},
		{Campaign: campaignID, Window: "d0"},
		{Campaign: campaignID, Window: "d9", Policy: scheduler.PolicyFCFS},
	} {
		_, err := a.Run(ctx, req)
		var ie *scheduler.InterruptedError
		require.True(t, errors.As(err, &ie), "want an InterruptedError, got %v", err)
	}

	got, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
	require.NoError(t, err)
	require.True(t, got.Resumed)
	w.checkInvariants(t)
	require.Equal(t, ref.bookings(t), w.bookings(t), "the resumed run ends where the uninterrupted one did")
	for _, r := range []*scheduler.Result{&want, &got} {
		r.RunID, r.Resumed, r.Seconds = 0, false, 0
	}
	require.Equal(t, want, got)
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// chiSquare is Pearson's statistic of the 2 × 10 table (assigned or not ×
// arrival decile) against independence.
func chiSquare(deciles []scheduler.Decile) float64 {
	var n, assigned float64
	for _, d := range deciles {
		n += float64(d.Registrations)
		assigned += float64(d.Assigned)
	}
	var x float64
	for _, d := range deciles {
		for _, cell := range []struct{ observed, share float64 }{
			{float64(d.Assigned), assigned / n},
			{float64(d.Registrations - d.Assigned), 1 - assigned/n},
		} {
			expected := float64(d.Registrations) * cell.share
			x += (cell.observed - expected) * (cell.observed - expected) / expected
		}
	}
	return x
}

func TestLotteryFairness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// 2,000 people for 600 places: who gets one must not depend on when
	// they arrived under the lottery, and does under fcfs (the control).
	w := newWorld(t, 1, 1, []clinic{{"c-11110-001", "11110", 37.5943, 126.9776, 600}})
	regs := make([]reg, 2000)
	for i := range regs {
		regs[i] = reg{window: "d9", region: "11110", arrival: time.Duration(i) * time.Second}
	}
	w.insert(t, regs)
	a := w.allocator(8, 1000)
	w.commitSeed(t, a, "d9")

	// χ² with 9 degrees of freedom exceeds 27.88 with probability 0.001.
	const critical = 27.88
	lottery, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9", DryRun: true})
	require.NoError(t, err)
	require.Len(t, lottery.ArrivalDeciles, 10)
	require.Equal(t, 600, lottery.Assigned)
	require.Less(t, chiSquare(lottery.ArrivalDeciles), critical, "lottery: the assignment rate depends on arrival: %+v", lottery.ArrivalDeciles)

	fcfs, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9", DryRun: true, Policy: scheduler.PolicyFCFS})
	require.NoError(t, err)
	require.Greater(t, chiSquare(fcfs.ArrivalDeciles), critical, "fcfs: the control must depend on arrival")
	require.Equal(t, 1.0, fcfs.ArrivalDeciles[0].Rate)
	require.Equal(t, 0.0, fcfs.ArrivalDeciles[9].Rate)
}
