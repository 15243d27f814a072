package stream_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

// BenchmarkKeyMemory measures what a live key of a key-value bucket costs
// the JetStream server's heap, beside as many messages on one subject of a
// stream: the server keeps an index entry per subject in memory for as long
// as the subject has a message, so every receipt, token and claim the
// stages key a bucket by holds memory until its entry expires, on every
// node. Run with -benchtime 200000x or more; heap-B/op is the heap the
// server (and the client, the same on both sides) holds per message once
// the publishing is over and the heap collected.
func BenchmarkKeyMemory(b *testing.B) {
	payload := make([]byte, 64) // about a receipt body's keyed hash with its headers
	b.Run("kv-key-per-message", func(b *testing.B) {
		srv := streamtest.New(b, stream.Config{})
		measureHeap(b, srv.JS, func(i int, key []byte) string {
			return "$KV." + stream.ReceiptBodies + "." + base64.RawURLEncoding.EncodeToString(key)
		}, payload)
	})
	b.Run("one-subject", func(b *testing.B) {
		srv := streamtest.New(b, stream.Config{})
		measureHeap(b, srv.JS, func(int, []byte) string {
			return "$KV." + stream.ReceiptBodies + ".one"
		}, payload)
	})
}

func measureHeap(b *testing.B, js jetstream.JetStream, subject func(int, []byte) string, payload []byte) {
	ctx := context.Background()
	if _, err := js.KeyValue(ctx, stream.ReceiptBodies); err != nil {
		b.Fatal(err)
	}
	// A key as long as a receipt (26 bytes, 35 characters).
	key := make([]byte, 26)
	before := liveHeap()
	b.ResetTimer()
	for i := range b.N {
		_, _ = rand.Read(key)
		if _, err := js.PublishAsync(subject(i, key), payload); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	b.StopTimer()
	b.ReportMetric(float64(int64(liveHeap())-int64(before))/float64(b.N), "heap-B/op")
}

func liveHeap() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
