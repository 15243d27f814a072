// Package stream is prereg's durable log on NATS JetStream: an embedded
// server for demo, dev and tests, the connection (with the version check
// prereg needs), and the declarations of the two streams intents flow
// through. Stages declare their own consumers on these streams.
package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/config"
)

// Stream names.
const (
	// Submitted holds intents as intake accepted them, identity token
	// included. Work-queue retention: a message is removed once verify has
	// acknowledged it, so tokens do not outlive their verification.
	Submitted = "INTENTS_SUBMITTED"
	// Verified holds verify's outcomes (no tokens), sharded by identity
	// key. Limits retention: it stays for MaxAge so that `prereg check` can
	// match every outcome with its decision.
	Verified = "INTENTS_VERIFIED"
)

// MinServerVersion is the oldest NATS server prereg works with: consumers
// with several filter subjects arrived in 2.10.
const MinServerVersion = "2.10.0"

// Config sets the limits of the streams. Zero values take the defaults
// documented in docs/STREAMS.md.
type Config struct {
	// DuplicateWindow is how long the submitted stream remembers a
	// Nats-Msg-Id (default 20 s). The server keeps each id in memory (about
	// 130 bytes), so at the surge's rate the memory budget bounds the
	// window (docs/STREAMS.md).
	DuplicateWindow time.Duration
	// VerifiedDuplicateWindow is the verified stream's (default 2 min): it
	// must outlast verify's AckWait (30 s), so that an outcome republished
	// after a lost ack is dropped as a duplicate. That stream's rate is
	// bounded by the identity providers', far below the surge's.
	VerifiedDuplicateWindow time.Duration
	// SubmittedMaxAge bounds how long an unverified intent (and its token)
	// may wait.
	SubmittedMaxAge time.Duration
	// SubmittedMaxBytes bounds the submitted stream's storage; at the limit
	// new publishes are refused (DiscardNew) and intake sheds with 503.
	SubmittedMaxBytes int64
	// VerifiedMaxAge is how long outcomes are kept for `check` and replay.
	VerifiedMaxAge time.Duration
	// Replicas for a clustered JetStream (1 on a single node).
	Replicas int
	// AtomicBatches lets the submitted stream take JetStream atomic batches
	// (NATS 2.12 or later), for intake's group commit.
	AtomicBatches bool
	// Logger takes what Declare finds: a live stream whose settings differ
	// from these, and which setting it kept.
	Logger *slog.Logger
	// ReceiptBodiesMaxAge is how long the first body of an idempotent
	// receipt is remembered (default 30 days): longer than any campaign,
	// from its first window's opening to its last one's close.
	ReceiptBodiesMaxAge time.Duration
	// ReceiptBodiesMaxBytes bounds that bucket (default 4 GiB, some 40
	// million receipts); at the limit idempotent submissions are shed.
	ReceiptBodiesMaxBytes int64
	// ReceiptLookupsMaxAge is how long a receipt's wrong birth dates are
	// counted after the last one (default 7 days); longer than the
	// longest lockout.
	ReceiptLookupsMaxAge time.Duration
	// ReceiptLookupsMaxBytes bounds that bucket (default 1 GiB).
	ReceiptLookupsMaxBytes int64
}

func (c Config) withDefaults() Config {
	c.DuplicateWindow = cmp.Or(c.DuplicateWindow, 20*time.Second)
	c.VerifiedDuplicateWindow = cmp.Or(c.VerifiedDuplicateWindow, 2*time.Minute)
	c.SubmittedMaxAge = cmp.Or(c.SubmittedMaxAge, 7*24*time.Hour)
	c.SubmittedMaxBytes = cmp.Or(c.SubmittedMaxBytes, int64(8<<30))
	c.VerifiedMaxAge = cmp.Or(c.VerifiedMaxAge, 30*24*time.Hour)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.ReceiptBodiesMaxAge = cmp.Or(c.ReceiptBodiesMaxAge, 30*24*time.Hour)
	c.ReceiptBodiesMaxBytes = cmp.Or(c.ReceiptBodiesMaxBytes, int64(4<<30))
	c.ReceiptLookupsMaxAge = cmp.Or(c.ReceiptLookupsMaxAge, 7*24*time.Hour)
	c.ReceiptLookupsMaxBytes = cmp.Or(c.ReceiptLookupsMaxBytes, int64(1<<30))
	return c
}

// SubmittedConfig is the declaration of the submitted stream.
func SubmittedConfig(c Config) jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        Submitted,
		Description: "intents accepted by intake, until verified",
		Subjects:    []string{prereg.SubjectSubmitted + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.SubmittedMaxAge,
		MaxBytes:    c.SubmittedMaxBytes,
		MaxMsgSize:  16 << 10,
		Duplicates:  c.DuplicateWindow,
		Replicas:    c.Replicas,

		AllowAtomicPublish: c.AtomicBatches,
	}
}

// VerifiedConfig is the declaration of the verified stream.
func VerifiedConfig(c Config) jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        Verified,
		Description: "verify's outcomes by identity shard, for dedupe and check",
		Subjects:    []string{prereg.SubjectVerified + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.VerifiedMaxAge,
		MaxMsgSize:  16 << 10,
		Duplicates:  c.VerifiedDuplicateWindow,
		Replicas:    c.Replicas,
	}
}

// Declare creates both streams, or brings existing ones in line with c
// without ever weakening them: of the replicas, the maximum ages, the
// storage bound and the duplicate windows, the stronger of the live and the
// configured setting is kept (more replicas, a longer age or window, more
// bytes; zero or unlimited beats any bound), and every difference is
// logged. Settings prereg does not declare (an operator's MaxMsgs,
// placement, sources) are left as they are. A live stream whose retention
// or storage differs is an error: those cannot change in place. Declaring
// twice is the same as declaring once. The receipt buckets (kv.go) are
// declared with the streams.
func Declare(ctx context.Context, js jetstream.JetStream, c Config) error {
	log := cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	for _, want := range []jetstream.StreamConfig{SubmittedConfig(c), VerifiedConfig(c)} {
		if err := declare(ctx, js, want, log); err != nil {
			return fmt.Errorf("declare stream %s: %w", want.Name, err)
		}
	}
	return declareBuckets(ctx, js, c)
}

func declare(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, log *slog.Logger) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, want)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		// Another process created it meanwhile: compare with theirs.
		s, err = js.Stream(ctx, want.Name)
	}
	if err != nil {
		return err
	}
	live := s.CachedInfo().Config
	merged, diffs, err := keepStronger(live, want)
	if err != nil {
		return err
	}
	for _, d := range diffs {
		log.Warn("stream differs from the configuration; keeping the stronger setting",
			slog.String("stream", want.Name), slog.String("setting", d.Setting),
			slog.String("configured", d.Configured), slog.String("live", d.Live), slog.String("kept", d.Kept))
	}
	if reflect.DeepEqual(merged, live) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, merged); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return nil
}

// Difference is a setting on which a live stream and the configuration
// disagree.
type Difference struct {
	Setting                string
	Configured, Live, Kept string
}

// keepStronger merges the configuration into a live stream's: the live
// settings prereg does not declare stay, those it declares are set, and of
// the limits an operator raises the stronger wins.
func keepStronger(live, want jetstream.StreamConfig) (jetstream.StreamConfig, []Difference, error) {
	if live.Retention != want.Retention {
		return live, nil, fmt.Errorf("retention is %s, prereg needs %s: it cannot change in place; move the messages to a new stream or delete it", live.Retention, want.Retention)
	}
	if live.Storage != want.Storage {
		return live, nil, fmt.Errorf("storage is %s, prereg needs %s: it cannot change in place", live.Storage, want.Storage)
	}
	merged := live
	merged.Description = want.Description
	merged.Subjects = want.Subjects
	merged.Discard = want.Discard
	merged.MaxMsgSize = want.MaxMsgSize
	merged.AllowAtomicPublish = live.AllowAtomicPublish || want.AllowAtomicPublish
	var diffs []Difference
	note := func(setting string, configured, live, kept any) {
		if configured != live {
			diffs = append(diffs, Difference{setting, fmt.Sprint(configured), fmt.Sprint(live), fmt.Sprint(kept)})
		}
	}
	merged.Replicas = max(live.Replicas, want.Replicas)
	note("replicas", want.Replicas, live.Replicas, merged.Replicas)
	merged.MaxAge = longer(live.MaxAge, want.MaxAge)
	note("max_age", want.MaxAge, live.MaxAge, merged.MaxAge)
	merged.MaxBytes = larger(live.MaxBytes, want.MaxBytes)
	note("max_bytes", limit(want.MaxBytes), limit(live.MaxBytes), limit(merged.MaxBytes))
	merged.Duplicates = max(live.Duplicates, want.Duplicates)
	note("duplicate_window", want.Duplicates, live.Duplicates, merged.Duplicates)
	return merged, diffs, nil
}

// longer is the longer of two maximum ages, zero (none) the longest.
func longer(a, b time.Duration) time.Duration {
	if a <= 0 || b <= 0 {
		return 0
	}
	return max(a, b)
}

// larger is the larger of two byte bounds, -1 or 0 (none) the largest.
func larger(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return -1
	}
	return max(a, b)
}

func limit(n int64) string {
	if n <= 0 {
		return "none"
	}
	return strconv.FormatInt(n, 10)
}

// SubmittedSubject is the subject of an intent in shard s.
func SubmittedSubject(shard int) string {
	return prereg.SubjectSubmitted + "." + strconv.Itoa(shard)
}

// VerifiedSubject is the subject of an outcome in identity shard s.
func VerifiedSubject(shard int) string {
	return prereg.SubjectVerified + "." + strconv.Itoa(shard)
}

// ShardOf parses the shard from a subject such as intents.verified.7.
func ShardOf(subject string) (int, error) {
	i := strings.LastIndexByte(subject, '.')
	n, err := strconv.Atoi(subject[i+1:])
	if err != nil {
		return 0, fmt.Errorf("subject %q has no shard: %w", subject, err)
	}
	return n, nil
}

// EmbeddedConfig configures an embedded JetStream server.
type EmbeddedConfig struct {
	// StoreDir holds the file store. Empty: a temporary folder of its own,
	// removed by Shutdown.
	StoreDir string
	// Host and Port to listen on for other processes; port -1 picks a free
	// one, 0 means the NATS default 4222.
	Host string
	Port int
	// SyncAlways makes every acknowledged message fsync'd first
	// (sync_interval: always).
	SyncAlways bool
	// MaxMemory and MaxStore bound JetStream; 0 for the server's defaults.
	MaxStore int64
}

// Embedded is a JetStream server running in this process.
type Embedded struct {
	srv *server.Server
	// tempDir is the store folder StartEmbedded made, removed at Shutdown.
	tempDir string
}

// StartEmbedded starts a JetStream server in this process.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	var tempDir string
	if cfg.StoreDir == "" {
		d, err := os.MkdirTemp("", "prereg-nats-")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		cfg.StoreDir, tempDir = d, d
	}
	emb, err := startEmbedded(cfg)
	if err != nil {
		if tempDir != "" {
			os.RemoveAll(tempDir)
		}
		return nil, err
	}
	emb.tempDir = tempDir
	return emb, nil
}

func startEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "prereg-embedded",
		Host:       cmp.Or(cfg.Host, "127.0.0.1"),
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		// Large enough for a surge's duplicate window and batches.
		MaxPayload:         1 << 20,
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: 256 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats: not ready after 15s")
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the URL other processes connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server is the embedded server, for tests that restart or inspect it.
func (e *Embedded) Server() *server.Server { return e.srv }

// Connect connects to the embedded server in process (no TCP).
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("prereg")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits for it; a store folder of its own
// is removed.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if e.tempDir != "" {
		os.RemoveAll(e.tempDir)
	}
}

// Connect connects to the NATS server at url and checks that it is new
// enough and has JetStream. Reconnects forever: a worker waits out an
// outage instead of exiting.
func Connect(ctx context.Context, url string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	opts = append([]nats.Option{
		nats.Name("prereg"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn("nats disconnected", slog.Any("err", err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats at %s: %w (set NATS_URL to a NATS >= %s with JetStream, or leave it unset for demo/dev to embed one)", config.RedactURL(url), err, MinServerVersion)
	}
	if err := CheckServer(ctx, nc); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// CheckServer fails when the server is older than MinServerVersion or has
// no JetStream.
func CheckServer(ctx context.Context, nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	if !versionAtLeast(v, MinServerVersion) {
		return fmt.Errorf("nats server %s is too old: prereg needs >= %s (multiple filter subjects per consumer); build one with `go install github.com/nats-io/nats-server/v2@latest` or leave NATS_URL unset to embed one", v, MinServerVersion)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats server has no JetStream (start it with -js): %w", err)
	}
	return nil
}

func versionAtLeast(have, want string) bool {
	h, w := parseVersion(have), parseVersion(want)
	for i := range 3 {
		if h[i] != w[i] {
			return h[i] > w[i]
		}
	}
	return true
}

func parseVersion(v string) [3]int {
	var out [3]int
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	for i, p := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(p)
	}
	return out
}
