// Package sim is the simulated world prereg is demonstrated, tested and
// benchmarked against: a synthetic population with its ground truth, the
// surge it submits, an identity provider, an SMS gateway and the handsets
// that count what each phone received. Production code never imports it.
package sim
