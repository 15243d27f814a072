package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// Unavailable reports whether err means a dependency could not do its part
// (PostgreSQL or JetStream unreachable, restarting, overloaded, timing
// out) rather than that the message being worked on is bad. Such an error
// must never count against a message: the worker waits instead.
//
// It knows PostgreSQL's errors without importing the driver, through the
// methods pgx's errors have: SQLState() on a server error, SafeToRetry()
// on one that happened before anything was sent.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return unavailableState(st.SQLState())
	}
	var safe interface{ SafeToRetry() bool }
	if errors.As(err, &safe) && safe.SafeToRetry() {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// unavailableState reports whether a SQLSTATE is the server's trouble, not
// the statement's.
func unavailableState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case strings.HasPrefix(code, "53"): // insufficient resources: connections, disk, memory
		return true
	case strings.HasPrefix(code, "57P"): // admin or crash shutdown, cannot connect now
		return true
	case strings.HasPrefix(code, "58"): // system error: I/O
		return true
	}
	switch code {
	case "40001", "40P01": // serialization failure, deadlock: the same work succeeds again
		return true
	case "57014": // query cancelled: a statement timeout
		return true
	case "25006": // read-only transaction: a fail-over to a standby under way
		return true
	}
	return false
}
