package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/notify/notifytest"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

// NotifyResult is the result of `prereg bench notify`.
type NotifyResult struct {
	Messages           int     `json:"messages"`
	Concurrency        int     `json:"concurrency"`
	BatchSize          int     `json:"batch_size"`
	Loops              int     `json:"loops"`
	NotifyPerS         float64 `json:"notify_per_s"`
	GatewayCeilingPerS float64 `json:"gateway_ceiling_per_s"`
	RatioCeiling       float64 `json:"ratio_ceiling"`
	HandsetDeliveries  int     `json:"handset_deliveries"`
	HandsetDuplicates  int     `json:"handset_duplicates"`
	CPUs               int     `json:"cpus"`
}

// NotifyOptions configure Notify.
type NotifyOptions struct {
	Messages    int    // outbox rows to drain
	Concurrency int    // sends in flight, for notify and the ceiling loop alike
	Batch       int    // rows each claim loop claims at once
	Loops       int    // notify's claim loops (they share Concurrency)
	CPUProfile  string // write a CPU profile of the notify run to this file
}

// Notify seeds an outbox in a scratch database and times the notify role,
// built by app as `prereg serve --roles notify` builds it, draining it to
// the simulated gateway; the ceiling is a bare loop posting as many
// messages straight to a fresh gateway.
func Notify(ctx context.Context, s Setup, o NotifyOptions) (*NotifyResult, error) {
	n, conc, batch, loops := &o.Messages, &o.Concurrency, &o.Batch, &o.Loops
	progress := s.progress
	db, err := world.OpenScratch(ctx, s.DatabaseURL, "prereg_bench_notify", s.logger())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	pool := db.Pool
	sealer, encKeys, err := notifytest.NewSealer()
	if err != nil {
		return nil, err
	}
	progress("seeding %d appointments and their outbox rows ...", *n)
	if _, err := notifytest.Seed(ctx, pool, notifytest.Config{Campaign: "bench-notify", N: *n, Sealer: sealer}); err != nil {
		return nil, err
	}
	// The seed is a bulk write, as an allocation round's is; a server's
	// autovacuum analyzes such tables within its naptime (a minute), and
	// a drain is planned on those statistics from then on. Measured on
	// none (where autovacuum is off, or in its first minute), a claim
	// takes the outbox's pending rows and the appointments and
	// registrations they join for small, and reads all of them each time.
	if _, err := pool.Exec(ctx, `ANALYZE registrations, appointments, clinics, outbox`); err != nil {
		return nil, fmt.Errorf("bench notify: analyze the seeded tables: %w", err)
	}
	res := &NotifyResult{Messages: *n, Concurrency: *conc, BatchSize: *batch, Loops: *loops, CPUs: runtime.NumCPU()}

	// 1. The ceiling: a bare loop posting as many messages straight to a
	// fresh gateway, with the same concurrency; half before the notify
	// run and half after, so that a change of the machine's load during
	// the run weighs on both sides alike.
	progress("gateway ceiling: %d direct posts, %d in flight ...", *n/2, *conc)
	ceilBefore, err := benchGatewayCeiling(ctx, *n/2, *conc)
	if err != nil {
		return nil, err
	}

	// 2. notify draining the outbox to a gateway whose own limit is off
	// (above anything notify can do), the account limit off too.
	progress("notify: draining %d outbox rows ...", *n)
	gw := sim.NewGateway(sim.GatewayConfig{})
	defer gw.Close()
	url, stop, err := world.ServeLoopback(gw.Handler())
	if err != nil {
		return nil, err
	}
	defer stop()
	cfg, err := benchConfig()
	if err != nil {
		return nil, err
	}
	// The outbox's phones are sealed with notifytest's key.
	if cfg.EncKeys, err = keys.ParseKeys(encKeys, 32); err != nil {
		return nil, err
	}
	nc, closeNATS, err := s.NATS(ctx)
	if err != nil {
		return nil, err
	}
	defer closeNATS()
	sys, err := app.New(app.Options{
		Roles: []app.Role{app.RoleNotify}, Logger: s.logger(), Pool: pool, NC: nc, Config: cfg,
		Notify: app.NotifyOptions{
			GatewayURL: url, TripAfter: 1000, Rate: math.Inf(1),
			Concurrency: *conc, BatchSize: *batch, Loops: *loops, PollInterval: 10 * time.Millisecond,
		},
	})
	if err != nil {
		return nil, err
	}
	stopProfile, err := StartCPUProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	start := time.Now()
	if err := sys.Start(ctx); err != nil {
		return nil, err
	}
	// The end is watched with a probe that stops at the first pending
	// row of the due index: counting them all every 20 ms would read every
	// pending row's heap page (the updates keep them from being
	// all-visible), and a bare EXISTS is planned as a sequential scan
	// through the rows sent already; either takes PostgreSQL's time from
	// the run it measures.
	for {
		var id int64
		err := pool.QueryRow(ctx, `SELECT id FROM outbox WHERE state = 'pending' ORDER BY next_attempt_at LIMIT 1`).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			sys.Stop()
			return nil, fmt.Errorf("bench notify: watch the outbox: %w", err)
		}
		select {
		case <-ctx.Done():
			sys.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	sys.Stop()
	res.NotifyPerS = float64(*n) / elapsed.Seconds()
	st := gw.Stats()
	res.HandsetDeliveries, res.HandsetDuplicates = st.HandsetDeliveries, st.HandsetDuplicates
	if res.HandsetDeliveries != *n || res.HandsetDuplicates != 0 {
		return nil, fmt.Errorf("bench notify: %d messages reached the handsets with %d duplicates, want %d and 0", res.HandsetDeliveries, res.HandsetDuplicates, *n)
	}

	progress("gateway ceiling: %d more direct posts ...", *n-*n/2)
	ceilAfter, err := benchGatewayCeiling(ctx, *n-*n/2, *conc)
	if err != nil {
		return nil, err
	}
	res.GatewayCeilingPerS = float64(*n) / (ceilBefore + ceilAfter).Seconds()
	res.RatioCeiling = res.NotifyPerS / res.GatewayCeilingPerS

	return res, nil
}

// PrintNotify writes a notify result for people.
func PrintNotify(out io.Writer, _ NotifyOptions, res *NotifyResult) {
	fmt.Fprintf(out, "bench notify: %d messages, %d in flight, batches of %d, %d claim loops, %d CPUs (delivery reports off in both runs)\n",
		res.Messages, res.Concurrency, res.BatchSize, res.Loops, res.CPUs)
	fmt.Fprintf(out, "  %-34s %10.0f msg/s\n", "notify (outbox → gateway)", res.NotifyPerS)
	fmt.Fprintf(out, "  %-34s %10.0f msg/s  (half before, half after the notify run)\n", "gateway ceiling (bare post loop)", res.GatewayCeilingPerS)
	fmt.Fprintf(out, "  %-34s %10.2f   (target >= 0.5)\n", "ratio_ceiling", res.RatioCeiling)
	fmt.Fprintf(out, "  every message reached its handset once: %d delivered, %d duplicates\n", res.HandsetDeliveries, res.HandsetDuplicates)
}

// benchGatewayCeiling posts n messages straight to a fresh simulated
// gateway from conc goroutines and returns how long it took.
func benchGatewayCeiling(ctx context.Context, n, conc int) (time.Duration, error) {
	gw := sim.NewGateway(sim.GatewayConfig{})
	defer gw.Close()
	url, stop, err := world.ServeLoopback(gw.Handler())
	if err != nil {
		return 0, err
	}
	defer stop()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body, _ := json.Marshal(map[string]string{"to": "010-2000-0001", "text": "[예방접종] 8/26(목) 09:00-12:00 강남구보건소 예약 조회 https://prereg.example.kr/", "type": "sms"})
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/messages", bytes.NewReader(body))
				if err == nil {
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Idempotency-Key", "ceiling:"+strconv.FormatInt(i, 10))
					var resp *http.Response
					if resp, err = client.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("gateway ceiling: %w", err) })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
