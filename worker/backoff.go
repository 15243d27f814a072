package worker

import (
	"math/rand/v2"
	"time"
)

// Backoff is capped full jitter: a uniform wait in (0, min(cap,
// base·2^(attempt-1))], so that the retries of many messages (or many
// workers) spread out instead of arriving together. Attempt counts from 1;
// anything smaller is taken as 1. A cap of zero or less means no wait.
func Backoff(attempt int, base, cap time.Duration) time.Duration {
	if cap <= 0 {
		return 0
	}
	ceil := cap
	if attempt < 1 {
		attempt = 1
	}
	if attempt-1 < 62 {
		if e := base << (attempt - 1); e > 0 && e < cap {
			ceil = e
		}
	}
	return time.Duration(rand.Int64N(int64(ceil))) + 1
}
