package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/stream"
)

// Configure fills the roles' options that the configuration sets: what
// `prereg serve` reads from the environment, handed to the roles it runs.
func (o *Options) Configure(cfg config.Config) {
	o.Config = cfg
	o.Stream = stream.Config{
		Replicas:                cfg.Stream.Replicas,
		SubmittedMaxAge:         cfg.Stream.SubmittedMaxAge,
		SubmittedMaxBytes:       cfg.Stream.SubmittedMaxBytes,
		DuplicateWindow:         cfg.Stream.DuplicateWindow,
		VerifiedDuplicateWindow: cfg.Stream.VerifiedDuplicateWindow,
		VerifiedMaxAge:          cfg.Stream.VerifiedMaxAge,
	}
	o.Intake.TrustedProxies, o.Intake.IPv6Prefix = cfg.TrustedProxies, cfg.IPv6Prefix
	o.Verify.ProviderCallsPerPrefix = cfg.Verify.CallsPerPrefix
	o.Verify.ProviderCallsPerCampaign = cfg.Verify.CallsPerCampaign
	o.Verify.AckWait, o.Verify.BackoffCap = cfg.Verify.AckWait, cfg.Verify.BackoffCap
	// Part of the submitted stream's declaration, so every process sets
	// it, whatever its roles.
	o.Stream.AtomicBatches, o.Intake.GroupCommit = cfg.GroupCommit, cfg.GroupCommit
	if slices.Contains(o.Roles, RoleDedupe) {
		o.Dedupe.Shards = cfg.Dedupe.Shards
		o.Dedupe.Workers = cfg.Dedupe.Workers
		o.Dedupe.BatchSize = cfg.Dedupe.BatchSize
		o.Dedupe.AckWait = cfg.Dedupe.AckWait
	}
	if slices.Contains(o.Roles, RoleNotify) || slices.Contains(o.Roles, RoleAdmin) {
		o.Notify.GatewayURL = cfg.SMS.URL
		o.Notify.WebhookSecret = cfg.SMS.Secret
		o.Notify.Rate = cfg.SMS.Rate
		o.Notify.Concurrency = cfg.SMS.Concurrency
	}
}

// Serve starts a System and its HTTP server on addr and runs until ctx
// ends; then it stops softly (HTTP drained, work in flight finished)
// within grace, and hard after that. ready, when set, is called with the
// listening address once the system is up.
func Serve(ctx context.Context, opts Options, addr string, grace time.Duration, ready func(string, *System)) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sys, err := New(opts)
	if err != nil {
		return err
	}
	if err := sys.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sys.Stop()
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := sys.NewServer(log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	names := make([]string, len(opts.Roles))
	for i, r := range opts.Roles {
		names[i] = string(r)
	}
	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("roles", strings.Join(names, ",")))
	if ready != nil {
		ready(ln.Addr().String(), sys)
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	log.Info("stopping: draining HTTP, then finishing work in flight", slog.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if shutErr := srv.Shutdown(sctx); shutErr != nil {
		_ = srv.Close()
	}
	done := make(chan struct{})
	go func() { sys.Stop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		log.Warn("soft stop took longer than the grace period; stopping hard")
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
