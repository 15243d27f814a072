// Package hostile holds prereg's hostile tests: a corpus of malformed,
// oversized, slow, injected and forged requests sent to both HTTP
// listeners of a real system (the fasthttp front of a process that runs
// intake, the net/http server of one that does not), and a scan for
// personal data in everything a demo surge leaves behind (logs, streams,
// tables, reports, metrics, answers).
//
// The package has tests only. `go test ./hostile` runs a short corpus and
// a small scan; `task hostile` runs the full corpus (-hostile.full) and a
// bigger scan. -hostile.seed picks a different generated corpus.
package hostile
