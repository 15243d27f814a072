package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// loadResult is what one load run saw.
type loadResult struct {
	elapsed   time.Duration
	ok        int64 // 202
	shed      int64 // 503
	other5xx  int64
	errors    int64 // anything but 202 (closed loop), or no answer
	timeouts  int64
	latencies []time.Duration // of every answered request
	statuses  map[int]int64   // answers other than 202 (0: no answer)
	firstErr  error
	// service is each request's time from its actual send (open loop):
	// latencies minus the generator's own lag.
	service []time.Duration
	// accepted is the latency of each 202 (open loop), from when it was
	// due: whether the 202s or the 503s make the p99.
	accepted []time.Duration
	// sent counts the requests the open loop sent before its end: when
	// the generator cannot keep up, fewer than were due.
	sent int64
}

// offered is the rate the open loop actually sent at over d.
func (r loadResult) offered(d time.Duration) float64 { return float64(r.sent) / d.Seconds() }

// others says which answers other than 202 came back, e.g. "503×12".
func (r loadResult) others() string {
	var parts []string
	for code, n := range r.statuses {
		parts = append(parts, fmt.Sprintf("%d×%d", code, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (r loadResult) rps() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// answersPerS counts every answer, whatever its status.
func (r loadResult) answersPerS() float64 {
	n := r.ok
	for code, c := range r.statuses {
		if code != 0 {
			n += c
		}
	}
	return float64(n) / r.elapsed.Seconds()
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

func summarize(rs []loadResult) ModeSummary {
	med := func(f func(loadResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var errs int64
	for _, r := range rs {
		errs += r.errors
	}
	return ModeSummary{
		RPS:    med(loadResult.rps),
		P50MS:  med(func(r loadResult) float64 { return ms(r.quantile(0.5)) }),
		P99MS:  med(func(r loadResult) float64 { return ms(r.quantile(0.99)) }),
		Errors: errs,
	}
}

// loadClient is the load generator's HTTP client. It is fasthttp's, which
// costs the generator a fraction of what net/http's client does per
// request: on the two cores the servers share with it, the generator must
// be able to offer what they can take (as wrk would), not be the limit
// itself, which net/http's client becomes on two cores.
type loadClient struct {
	hc      *fasthttp.HostClient
	uri     string
	timeout time.Duration
}

func newLoadClient(url string, conns int, timeout time.Duration) *loadClient {
	return &loadClient{
		hc: &fasthttp.HostClient{
			Addr: strings.TrimPrefix(url, "http://"), MaxConns: conns,
			ReadTimeout: timeout, WriteTimeout: timeout, MaxConnWaitTimeout: timeout,
			MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true,
		},
		uri:     url + "/v1/intents",
		timeout: timeout,
	}
}

// post sends one body and returns the answer's status.
func (c *loadClient) post(body []byte) (int, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(c.uri)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := c.hc.DoTimeout(req, res, c.timeout); err != nil {
		return 0, err
	}
	return res.StatusCode(), nil
}

func (c *loadClient) close() { c.hc.CloseIdleConnections() }

// closedLoop runs conns workers that each send the next body as soon as the
// previous one is answered.
func closedLoop(ctx context.Context, url string, bodies [][]byte, conns int, d time.Duration) (loadResult, error) {
	client := newLoadClient(url, conns, 10*time.Second)
	defer client.close()
	var next atomic.Int64
	var mu sync.Mutex
	res := loadResult{statuses: map[int]int64{}}
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ok, bad int64
			statuses := map[int]int64{}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				b := bodies[int(next.Add(1))%len(bodies)]
				t0 := time.Now()
				status, err := client.post(b)
				if err != nil || status != http.StatusAccepted {
					statuses[status]++
					bad++
					continue
				}
				ok++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			for code, n := range statuses {
				res.statuses[code] += n
			}
			res.ok += ok
			res.errors += bad
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	return res, ctx.Err()
}

// openLoopTimeout is how long the open-loop generator's clients wait for
// an answer, counted from when the request was due.
const openLoopTimeout = 10 * time.Second

// openLoop offers rate requests per second for d whatever the answers, and
// measures each latency from the moment the request was due, so that a
// server that falls behind cannot hide it (no coordinated omission). It
// sends on workers connections, one request at a time on each: when they
// are all waiting, the requests falling due wait in the generator, and
// their wait counts.
func openLoop(ctx context.Context, url string, bodies [][]byte, rate float64, d time.Duration, workers int) loadResult {
	client := newLoadClient(url, workers, openLoopTimeout)
	defer client.close()
	due := make(chan time.Time, 1<<20)
	var mu sync.Mutex
	res := loadResult{statuses: map[int]int64{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ok, shed, other5xx, errs, timeouts, sent int64
			var service, accepted []time.Duration
			for at := range due {
				if time.Since(at) > openLoopTimeout {
					// A citizen gives up after the timeout, whether the
					// request sat in the server or never got a connection.
					timeouts++
					errs++
					continue
				}
				b := bodies[int(next.Add(1))%len(bodies)]
				sentAt := time.Now()
				if sentAt.Before(end) {
					sent++
				}
				status, err := client.post(b)
				service = append(service, time.Since(sentAt))
				switch {
				case err != nil:
					var ne net.Error
					if errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout() {
						timeouts++
					}
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					errs++
					continue
				case status == http.StatusAccepted:
					ok++
					accepted = append(accepted, time.Since(at))
				case status == http.StatusServiceUnavailable:
					shed++
				case status >= 500:
					other5xx++
				default:
					mu.Lock()
					res.statuses[status]++
					mu.Unlock()
					errs++
				}
				lat = append(lat, time.Since(at))
			}
			mu.Lock()
			res.ok += ok
			res.shed += shed
			res.other5xx += other5xx
			res.errors += errs
			res.timeouts += timeouts
			res.sent += sent
			res.latencies = append(res.latencies, lat...)
			res.service = append(res.service, service...)
			res.accepted = append(res.accepted, accepted...)
			mu.Unlock()
		}()
	}
	interval := time.Duration(float64(time.Second) / rate)
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	for now := start; now.Sub(start) < d && ctx.Err() == nil; now = <-tick.C {
		for target := int(now.Sub(start) / interval); sent < target; sent++ {
			due <- start.Add(time.Duration(sent) * interval)
		}
	}
	tick.Stop()
	close(due)
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	slices.Sort(res.service)
	slices.Sort(res.accepted)
	return res
}
