// Package worker is what every consuming loop of prereg shares about
// waiting: the capped full-jitter Backoff, and Health, which tracks the
// dependencies a worker is waiting on, logs each outage once per change of
// state (down; still down every minute, with a count; back up) instead of
// once per failed attempt, and tells /readyz whether the worker can make
// progress.
package worker
