package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/verify"
	"github.com/prereg/prereg/world"
)

// VerifyResult is the result of `prereg bench verify`.
type VerifyResult struct {
	VerifiedPerS0ms   float64   `json:"verified_per_s_0ms"`
	VerifiedPerS50ms  float64   `json:"verified_per_s_50ms"`
	Ceiling50ms       float64   `json:"ceiling_50ms"`
	RatioCeiling50ms  float64   `json:"ratio_ceiling_50ms"`
	BareCallsPerS50ms float64   `json:"bare_calls_per_s_50ms"`
	RatioBare50ms     float64   `json:"ratio_bare_50ms"`
	Intents0ms        int       `json:"intents_0ms"`
	Intents50ms       int       `json:"intents_50ms"`
	Concurrency       int       `json:"concurrency"`
	Runs              int       `json:"runs"`
	Runs0ms           []float64 `json:"runs_0ms"`
	Runs50ms          []float64 `json:"runs_50ms"`
	RunsBare50ms      []float64 `json:"runs_bare_50ms"`
	IdPCallsPerIntent float64   `json:"idp_calls_per_intent"`
	Cores             int       `json:"cores"`
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Intents     int           // intents verified in the 0 ms phase
	Intents50ms int           // intents verified in the Latency phase
	Concurrency int           // the provider's concurrency limit (bulkhead)
	Latency     time.Duration // the provider's latency in the second phase
	Runs        int           // runs of each phase; the medians are reported
	CPUProfile  string        // write a CPU profile of the whole bench to this file
}

// Verify times the verify role, built by app, against the simulated
// provider at 0 ms and at Latency, and a bare client posting as many tokens
// to the provider at the same concurrency: what the machine gives.
func Verify(ctx context.Context, s Setup, o VerifyOptions) (*VerifyResult, error) {
	stopProfile, err := StartCPUProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	n0, n50, conc, latency, runs := &o.Intents, &o.Intents50ms, &o.Concurrency, &o.Latency, &o.Runs
	say := s.progress
	out := &VerifyResult{
		Intents0ms: *n0, Intents50ms: *n50, Concurrency: *conc, Runs: *runs, Cores: runtime.NumCPU(),
		Ceiling50ms: float64(*conc) / latency.Seconds(),
	}
	var calls, intents int64
	for r := range *runs {
		for _, ph := range []struct {
			n       int
			latency time.Duration
			into    *[]float64
		}{{*n0, 0, &out.Runs0ms}, {*n50, *latency, &out.Runs50ms}} {
			say("run %d/%d: %d intents at %s provider latency…", r+1, *runs, ph.n, ph.latency)
			rate, c, err := benchVerifyPhase(ctx, s, ph.n, *conc, ph.latency)
			if err != nil {
				return nil, err
			}
			*ph.into = append(*ph.into, rate)
			calls += c
			intents += int64(ph.n)
		}
		say("run %d/%d: bare client, %d calls at %s…", r+1, *runs, *n50, *latency)
		bare, err := benchBareCalls(ctx, *n50, *conc, *latency)
		if err != nil {
			return nil, err
		}
		out.RunsBare50ms = append(out.RunsBare50ms, bare)
	}
	out.VerifiedPerS0ms = median(out.Runs0ms)
	out.VerifiedPerS50ms = median(out.Runs50ms)
	out.RatioCeiling50ms = out.VerifiedPerS50ms / out.Ceiling50ms
	out.BareCallsPerS50ms = median(out.RunsBare50ms)
	out.RatioBare50ms = out.VerifiedPerS50ms / out.BareCallsPerS50ms
	out.IdPCallsPerIntent = float64(calls) / float64(intents)

	return out, nil
}

// PrintVerify writes a verify result for people.
func PrintVerify(w io.Writer, o VerifyOptions, out *VerifyResult) {
	conc, latency, n0, n50, runs := &o.Concurrency, &o.Latency, &o.Intents, &o.Intents50ms, &o.Runs
	fmt.Fprintf(w, "verify bench: simulated provider over loopback HTTP, concurrency %d, embedded JetStream, %d cores, median of %d runs\n\n", *conc, out.Cores, *runs)
	fmt.Fprintf(w, "  %-30s %10.0f /s  (%d intents)\n", "verified, provider at 0 ms", out.VerifiedPerS0ms, *n0)
	fmt.Fprintf(w, "  %-30s %10.0f /s  (%d intents)\n", fmt.Sprintf("verified, provider at %s", *latency), out.VerifiedPerS50ms, *n50)
	fmt.Fprintf(w, "  %-30s %10.0f /s  (%d / %s)\n", "ceiling of the limit", out.Ceiling50ms, *conc, *latency)
	fmt.Fprintf(w, "  %-30s %10.3f     (target >= 0.9)\n", "ratio to the ceiling", out.RatioCeiling50ms)
	fmt.Fprintf(w, "  %-30s %10.0f /s  (%d goroutines posting, nothing else: what this machine gives now)\n", "bare client at the same limit", out.BareCallsPerS50ms, *conc)
	fmt.Fprintf(w, "  %-30s %10.3f\n", "ratio to the bare client", out.RatioBare50ms)
	fmt.Fprintf(w, "  %-30s %10.3f\n", "provider calls per intent", out.IdPCallsPerIntent)
}

// verifyCampaignYAML is the verify bench's campaign; its one provider's
// URL and limits are filled in per phase.
const verifyCampaignYAML = `
id: bench-verify
name: verify benchmark
cohort: {born_from: 1970-01-01, born_to: 2005-12-31}
windows:
  - {id: w, opens: 2021-08-09 20:00, closes: 2021-08-10 18:00, digits: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
providers:
  - {name: pass, url: "%s", timeout: 5s, concurrency: %d, burst: %d}
shards: 16
schedule: {start: 2021-08-26, days: 1}
`

// benchVerifyPhase publishes n intents of distinct people (no cache can
// spare a call) into a fresh JetStream, then starts the verify role and
// times it until the last outcome is in the verified stream.
func benchVerifyPhase(ctx context.Context, s Setup, n, conc int, latency time.Duration) (perSecond float64, calls int64, err error) {
	nc, closeNATS, err := s.NATS(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer closeNATS()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, fmt.Errorf("jetstream: %w", err)
	}
	if err := stream.Declare(ctx, js, stream.Config{}); err != nil {
		return 0, 0, err
	}
	if err := benchVerifyReset(ctx, js); err != nil {
		return 0, 0, err
	}

	idp := sim.NewIdP("pass", sim.DemoTokenSecret("pass"), sim.DemoCISecret)
	if err := idp.SetFaults(sim.Faults{Latency: sim.Duration(latency)}); err != nil {
		return 0, 0, err
	}
	load := &providerLoad{next: idp.Handler()}
	url, stopIdP, err := world.ServeLoopback(load)
	if err != nil {
		return 0, 0, err
	}
	defer stopIdP()

	db, err := world.OpenScratch(ctx, s.DatabaseURL, "prereg_bench_verify", s.logger())
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	camp, err := campaign.Parse([]byte(fmt.Sprintf(verifyCampaignYAML, url, conc, conc)), "")
	if err != nil {
		return 0, 0, fmt.Errorf("bench campaign: %w", err)
	}
	if _, err := (&postgres.CampaignStore{Pool: db.Pool}).Load(ctx, camp); err != nil {
		return 0, 0, err
	}
	cfg, err := benchConfig()
	if err != nil {
		return 0, 0, err
	}
	hasher := keys.NewHasher(cfg.HMACKeys[0])
	sealer, err := keys.NewSealer(cfg.EncKeys)
	if err != nil {
		return 0, 0, err
	}
	// Publish the backlog first: the phase measures verify, not intake.
	for i := range n {
		phone := fmt.Sprintf("+8210%08d", i)
		bd := time.Date(1980+i%20, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC).Format(prereg.DateLayout)
		in := prereg.Intent{
			Receipt: fmt.Sprintf("bench-%08d", i), Campaign: camp.ID, Window: "w", Provider: "pass",
			IdentityToken: idp.Issue(sim.TokenClaims{Person: fmt.Sprint("p", i), Birthdate: bd, Phone: phone, Device: "d"}),
			Birthdate:     bd, Phone: sealer.Seal([]byte(phone), []byte(camp.ID)), Region: "11680",
			DeviceKey: hasher.Sum(keys.PurposeDevice, camp.ID, fmt.Sprint(i)), ReceivedAt: time.Now().UTC(),
		}
		data, err := stream.Encode(in)
		if err != nil {
			return 0, 0, err
		}
		if _, err := js.PublishAsync(stream.SubmittedSubject(prereg.Shard(in.Receipt, camp.Shards)), data, jetstream.WithMsgID(in.Receipt)); err != nil {
			return 0, 0, fmt.Errorf("publish: %w", err)
		}
		if i%1000 == 999 {
			if err := waitAsync(ctx, js); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := waitAsync(ctx, js); err != nil {
		return 0, 0, err
	}

	sys, err := app.New(app.Options{
		Roles: []app.Role{app.RoleVerify}, Logger: s.logger(), Pool: db.Pool, NC: nc, Config: cfg,
		// Without the spend guard's campaign ceiling, an operator's choice:
		// the phase measures what verify itself can do.
		Verify: app.VerifyOptions{Settings: verify.Settings{Batch: 4 * conc, ProviderCallsPerCampaign: -1}},
	})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := sys.Start(ctx); err != nil {
		return 0, 0, err
	}
	defer sys.Stop()
	vs, err := js.Stream(ctx, stream.Verified)
	if err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		info, err := vs.Info(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("verified stream: %w", err)
		}
		if int(info.State.Msgs) >= n {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("only %d of %d intents verified after 10 minutes", info.State.Msgs, n)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	if mfs, err := sys.Registry().Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "prereg_verify_naks_total" {
				for _, m := range mf.GetMetric() {
					s.logger().Debug("bench verify: naks", slog.String("cause", m.GetLabel()[0].GetValue()), slog.Float64("n", m.GetCounter().GetValue()))
				}
			}
		}
	}
	s.logger().Debug("bench verify: provider load",
		slog.Duration("provider_latency", latency),
		slog.Float64("mean_calls_in_flight", load.meanInFlight(elapsed)),
		slog.Duration("mean_handler_time", load.meanTime()))
	return float64(n) / elapsed.Seconds(), idp.Calls(), nil
}

// benchVerifyReset empties what a previous phase left on a shared server
// (NATS_URL set): the streams, the consumer and verify's caches.
func benchVerifyReset(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{stream.Submitted, stream.Verified} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		if err := s.Purge(ctx); err != nil {
			return fmt.Errorf("purge %s: %w", name, err)
		}
	}
	_ = js.DeleteConsumer(ctx, stream.Submitted, verify.ConsumerName)
	for _, b := range []string{verify.BucketTokens, verify.BucketClaims, verify.BucketAttempts} {
		_ = js.DeleteKeyValue(ctx, b)
	}
	return nil
}

func waitAsync(ctx context.Context, js jetstream.JetStream) error {
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return fmt.Errorf("publishing the backlog: no ack within a minute")
	}
}

// benchBareCalls is the reference for the 50 ms phase as this machine
// runs it right now: conc goroutines posting n tokens to a fresh simulated
// provider with the same latency, and nothing else (no JetStream, no
// caches, no breaker).
func benchBareCalls(ctx context.Context, n, conc int, latency time.Duration) (float64, error) {
	idp := sim.NewIdP("pass", sim.DemoTokenSecret("pass"), sim.DemoCISecret)
	if err := idp.SetFaults(sim.Faults{Latency: sim.Duration(latency)}); err != nil {
		return 0, err
	}
	url, stop, err := world.ServeLoopback(idp.Handler())
	if err != nil {
		return 0, err
	}
	defer stop()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = conc, conc
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	bodies := make([][]byte, n)
	for i := range bodies {
		tok := idp.Issue(sim.TokenClaims{Person: fmt.Sprint("p", i), Birthdate: "1990-01-01", Phone: "+821000000000", Device: "d"})
		bodies[i], _ = json.Marshal(map[string]string{"token": tok})
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/verify", bytes.NewReader(bodies[i]))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return 0, fmt.Errorf("bare client: %d of %d calls failed", failed.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds(), ctx.Err()
}

// providerLoad measures what verify asked of the provider: the calls in
// flight on average and how long the handler took, so that a shortfall
// against the ceiling can be told apart from a provider slowed by the
// machine's load.
type providerLoad struct {
	next     http.Handler
	busyNS   atomic.Int64 // sum of handler times
	requests atomic.Int64
}

func (l *providerLoad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	l.next.ServeHTTP(w, r)
	l.busyNS.Add(int64(time.Since(start)))
	l.requests.Add(1)
}

// meanInFlight is Little's law over the phase: busy time / elapsed.
func (l *providerLoad) meanInFlight(elapsed time.Duration) float64 {
	return float64(l.busyNS.Load()) / float64(elapsed)
}

func (l *providerLoad) meanTime() time.Duration {
	if n := l.requests.Load(); n > 0 {
		return time.Duration(l.busyNS.Load() / n)
	}
	return 0
}
