// Package chaos is prereg's fault suite: it runs the system as an operator
// would, one OS process per role (`prereg serve --roles …`), against a
// real nats-server (one node, or a three-node JetStream cluster started
// from deploy/nats/), a private PostgreSQL cluster, and the simulated
// identity providers and SMS gateway as processes of their own. A case
// sends a surge with `prereg loadgen --receipts`, injects faults (SIGKILL
// of roles, an immediate PostgreSQL stop, NATS nodes and the streams'
// leader killed, providers down, refusing or slow, the gateway down or
// rate limiting, poison messages), restarts what it broke, and then
// checks prereg's promise: every 202 ends with exactly one decision, each
// person with at most one registration and one appointment, and each
// appointment with exactly one SMS counted at the simulated handsets.
//
// Each case yields a Row of the reliability table (docs/RELIABILITY.md).
// The short cases run in `go test ./...`; `task chaos` runs the long ones
// (PREREG_CHAOS=long).
package chaos
