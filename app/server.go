package app

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
)

// Server serves a System's routes on a listener.
type Server interface {
	Serve(ln net.Listener) error
	// Shutdown stops taking requests and waits for those under way, until
	// ctx ends.
	Shutdown(ctx context.Context) error
	// Close stops at once.
	Close() error
}

// NewServer is the HTTP server for the system's routes. A process that
// runs intake listens with intake's fasthttp front (intake/fast.go: the
// submissions served natively, every other route by Handler); any other
// process with net/http. errLog takes the server's own errors.
func (s *System) NewServer(errLog *slog.Logger) Server {
	if s.intake != nil {
		return fastServer{s.intake.FastServer(s.Handler(), errLog), s.intake.Listener}
	}
	return &http.Server{
		Handler: s.Handler(),
		// A slowloris client that trickles its headers is cut off at
		// ReadHeaderTimeout, an idle kept-alive connection at IdleTimeout:
		// each holds a goroutine and its buffers until then.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(errLog.Handler(), slog.LevelWarn),
	}
}

// maxHeaderBytes bounds a request's line and headers on the net/http
// server (431 beyond), as intake's front does.
const maxHeaderBytes = 8 << 10

// fastServer gives a fasthttp server the shape of net/http's, serving on
// a listener that caps the connections per client address.
type fastServer struct {
	*fasthttp.Server
	capped func(net.Listener) net.Listener
}

func (f fastServer) Serve(ln net.Listener) error { return f.Server.Serve(f.capped(ln)) }

func (f fastServer) Shutdown(ctx context.Context) error { return f.ShutdownWithContext(ctx) }

// Close closes the listener and the idle connections without waiting;
// requests under way finish on their own.
func (f fastServer) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = f.ShutdownWithContext(ctx)
	return nil
}
