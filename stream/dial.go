package stream

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"
)

// ErrNoServer is Dial's answer when no URL is given and an embedded server
// is not allowed: production processes need a NATS server of their own.
var ErrNoServer = errors.New("NATS_URL is not set: point it at a NATS server >= 2.10 with JetStream (nats-server -js); prereg demo and dev embed one")

// Dial connects to the NATS server at url. With url empty and embedded
// set (demo, dev, benchmarks), it starts an embedded JetStream server in a
// temporary folder instead, configured by *embedded. The returned function
// closes the connection and stops and removes an embedded server.
func Dial(ctx context.Context, url string, embedded *EmbeddedConfig, log *slog.Logger) (*nats.Conn, func(), error) {
	if url != "" {
		nc, err := Connect(ctx, url, log)
		if err != nil {
			return nil, nil, err
		}
		return nc, nc.Close, nil
	}
	if embedded == nil {
		return nil, nil, ErrNoServer
	}
	emb, err := StartEmbedded(*embedded)
	if err != nil {
		return nil, nil, err
	}
	nc, err := emb.Connect()
	if err != nil {
		emb.Shutdown()
		return nil, nil, err
	}
	return nc, func() {
		nc.Close()
		emb.Shutdown()
	}, nil
}
