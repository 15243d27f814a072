package sim

import (
	"errors"
	"flag"
	"time"
)

// Flags defines the fault flags of `prereg sim idp` on fs, with their
// defaults, into f.
func (f *Faults) Flags(fs *flag.FlagSet) {
	fs.DurationVar((*time.Duration)(&f.Latency), "latency", 0, "median delay before every answer")
	fs.DurationVar((*time.Duration)(&f.LatencyP99), "latency-p99", 0, "99th percentile of the delay: log-normal between it and --latency (default: every answer waits --latency)")
	fs.Float64Var(&f.ErrorRate, "error-rate", 0, "fraction of requests answered --error-status")
	fs.IntVar(&f.ErrorStatus, "error-status", 503, "status of injected errors (5xx: failures; 4xx: refusals)")
	fs.Float64Var(&f.TimeoutRate, "timeout-rate", 0, "fraction of requests never answered (held until the client gives up)")
	fs.BoolVar(&f.Down, "down", false, "answer everything 503 until PUT /v1/faults lifts it")
	fs.Float64Var(&f.DripRate, "drip-rate", 0, "fraction of successful answers whose body trickles out a byte at a time")
	fs.DurationVar((*time.Duration)(&f.DripEvery), "drip-every", 100*time.Millisecond, "pause between the bytes of a dripped body")
	fs.Var((*Outages)(&f.Outages), "outage", "answer 503 from FROM to TO after start, e.g. 10s-40s (repeatable, or comma-separated)")
}

// Flags defines the flags of `prereg sim sms` on fs, with their defaults,
// into c: the rate limit, the delivery reports and the faults.
func (c *GatewayConfig) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ReportURL, "report-url", "", "delivery-report webhook, e.g. http://127.0.0.1:8081/v1/sms/reports (signed with PREREG_SMS_SECRET); none when empty")
	fs.DurationVar(&c.ReportDelay, "report-delay", 100*time.Millisecond, "delay between delivery and its report")
	fs.Float64Var(&c.Rate, "rate", 0, "the account's limit in messages per second, answered 429 above it (0: none)")
	fs.IntVar(&c.Burst, "burst", 1, "the rate limit's bucket")
	fs.BoolVar(&c.IgnoreIdempotency, "no-idempotency", false, "ignore Idempotency-Key: every request is sent (fault: a gateway without de-duplication)")
	fs.BoolVar(&c.Faults.Down, "down", false, "answer every send 503 (fault: an outage; lift it with PUT /v1/faults {\"down\":false})")
	fs.Float64Var(&c.Faults.ErrorRate, "error-rate", 0, "fraction of sends answered 500 (fault)")
	fs.DurationVar((*time.Duration)(&c.Faults.Latency), "latency", 0, "delay before every answer (fault)")
}

// Check refuses flag values `prereg sim sms` cannot run with.
func (c GatewayConfig) Check() error {
	if c.Rate < 0 || c.Burst < 1 || c.Faults.ErrorRate < 0 || c.Faults.ErrorRate > 1 || c.Faults.Latency < 0 {
		return errors.New("want --rate >= 0, --burst >= 1, 0 <= --error-rate <= 1, --latency >= 0")
	}
	return nil
}
