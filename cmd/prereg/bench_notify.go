package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/notify/notifytest"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/sim"
)

func init() {
	register(command{name: "bench notify", summary: "notify's messages per second from the outbox against the simulated gateway's bare ceiling", run: cmdBenchNotify})
}

// notifyBench is the result of `prereg bench notify`, with the JSON keys
// of issue 7.
type notifyBench struct {
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

func cmdBenchNotify(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "bench notify", "[--messages N] [--concurrency C] [--format text|json]")
	n := fs.Int("messages", 100_000, "outbox rows to drain (issue 7's size: 100000)")
	conc := fs.Int("concurrency", 64, "sends in flight, for notify and for the ceiling loop alike")
	batch := fs.Int("batch", 512, "rows each claim loop claims at once")
	loops := fs.Int("loops", 4, "notify's claim loops (they share --concurrency)")
	format := fs.String("format", "text", "text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the notify run to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usagef("--format %q: want text or json", *format)
	}
	if *n < 100 || *conc < 1 || *batch < 1 || *loops < 1 {
		return usagef("want --messages >= 100 and positive --concurrency, --batch, --loops")
	}
	progress := func(msg string, a ...any) {
		if *format == "text" {
			fmt.Fprintf(env.Stderr, msg+"\n", a...)
		}
	}

	db, err := env.ScratchDatabase(ctx, "prereg_bench_notify")
	if err != nil {
		return err
	}
	defer db.Close()
	pool := db.Pool
	sealer, _, err := notifytest.NewSealer()
	if err != nil {
		return err
	}
	progress("seeding %d appointments and their outbox rows ...", *n)
	if _, err := notifytest.Seed(ctx, pool, notifytest.Config{Campaign: "bench-notify", N: *n, Sealer: sealer}); err != nil {
		return err
	}
	res := notifyBench{Messages: *n, Concurrency: *conc, BatchSize: *batch, Loops: *loops, CPUs: runtime.NumCPU()}

	// 1. The ceiling: a bare loop posting as many messages straight to a
	// fresh gateway, with the same concurrency; half before the notify
	// run and half after, so that a change of the machine's load during
	// the run weighs on both sides alike.
	progress("gateway ceiling: %d direct posts, %d in flight ...", *n/2, *conc)
	ceilBefore, err := benchGatewayCeiling(ctx, *n/2, *conc)
	if err != nil {
		return err
	}

	// 2. notify draining the outbox to a gateway whose own limit is off
	// (above anything notify can do), the account limit off too.
	progress("notify: draining %d outbox rows ...", *n)
	gw := sim.NewGateway(sim.GatewayConfig{})
	defer gw.Close()
	url, stop, err := serveLoopback(gw.Handler())
	if err != nil {
		return err
	}
	defer stop()
	client, err := notify.NewGateway(notify.GatewayConfig{URL: url, TripAfter: 1000})
	if err != nil {
		return err
	}
	store := &postgres.OutboxStore{Pool: pool}
	w, err := notify.New(notify.Config{
		Outbox: store, Gateway: client, Phones: sealer, Campaigns: &postgres.CampaignStore{Pool: pool},
		Rate: math.Inf(1), Concurrency: *conc, BatchSize: *batch, Loops: *loops, PollInterval: 10 * time.Millisecond,
		Logger: env.Logger,
	})
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	start := time.Now()
	if err := w.Start(ctx); err != nil {
		return err
	}
	for {
		pending, err := store.Pending(ctx)
		if err != nil {
			w.Stop()
			return err
		}
		if pending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			w.Stop()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	w.Stop()
	res.NotifyPerS = float64(*n) / elapsed.Seconds()
	st := gw.Stats()
	res.HandsetDeliveries, res.HandsetDuplicates = st.HandsetDeliveries, st.HandsetDuplicates
	if res.HandsetDeliveries != *n || res.HandsetDuplicates != 0 {
		return fmt.Errorf("bench notify: %d messages reached the handsets with %d duplicates, want %d and 0", res.HandsetDeliveries, res.HandsetDuplicates, *n)
	}

	progress("gateway ceiling: %d more direct posts ...", *n-*n/2)
	ceilAfter, err := benchGatewayCeiling(ctx, *n-*n/2, *conc)
	if err != nil {
		return err
	}
	res.GatewayCeilingPerS = float64(*n) / (ceilBefore + ceilAfter).Seconds()
	res.RatioCeiling = res.NotifyPerS / res.GatewayCeilingPerS

	if *format == "json" {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	out := env.Stdout
	fmt.Fprintf(out, "bench notify: %d messages, %d in flight, batches of %d, %d claim loops, %d CPUs (delivery reports off in both runs)\n",
		res.Messages, res.Concurrency, res.BatchSize, res.Loops, res.CPUs)
	fmt.Fprintf(out, "  %-34s %10.0f msg/s\n", "notify (outbox → gateway)", res.NotifyPerS)
	fmt.Fprintf(out, "  %-34s %10.0f msg/s  (half before, half after the notify run)\n", "gateway ceiling (bare post loop)", res.GatewayCeilingPerS)
	fmt.Fprintf(out, "  %-34s %10.2f   (target >= 0.5)\n", "ratio_ceiling", res.RatioCeiling)
	fmt.Fprintf(out, "  every message reached its handset once: %d delivered, %d duplicates\n", res.HandsetDeliveries, res.HandsetDuplicates)
	return nil
}

// benchGatewayCeiling posts n messages straight to a fresh simulated
// gateway from conc goroutines and returns how long it took.
func benchGatewayCeiling(ctx context.Context, n, conc int) (time.Duration, error) {
	gw := sim.NewGateway(sim.GatewayConfig{})
	defer gw.Close()
	url, stop, err := serveLoopback(gw.Handler())
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
