// Package streamtest gives a test its own embedded JetStream server with a
// file store in the test's temporary folder, and the streams declared. Each
// test gets a fresh server, so tests never see each other's messages and
// the shared servers are left as they were.
package streamtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/stream"
)

// Server is a test's embedded JetStream with a connection.
type Server struct {
	*stream.Embedded
	NC *nats.Conn
	JS jetstream.JetStream
}

// New starts an embedded JetStream server on a free loopback port, declares
// prereg's streams, and stops it when the test ends.
func New(tb testing.TB, cfg stream.Config) *Server {
	tb.Helper()
	return NewWith(tb, stream.EmbeddedConfig{}, cfg)
}

// NewWith is New with a server configuration (StoreDir defaults to a
// temporary folder).
func NewWith(tb testing.TB, ecfg stream.EmbeddedConfig, cfg stream.Config) *Server {
	tb.Helper()
	if ecfg.StoreDir == "" {
		ecfg.StoreDir = tb.TempDir()
	}
	if ecfg.Port == 0 {
		ecfg.Port = -1
	}
	e, err := stream.StartEmbedded(ecfg)
	if err != nil {
		tb.Fatalf("streamtest: %v", err)
	}
	tb.Cleanup(e.Shutdown)
	nc, err := nats.Connect(e.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatalf("streamtest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("streamtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stream.Declare(ctx, js, cfg); err != nil {
		tb.Fatalf("streamtest: %v", err)
	}
	return &Server{Embedded: e, NC: nc, JS: js}
}
