package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/config"

	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/verify"
)

// VerifyOptions are the verify role's settings beyond the shared ones
// (batch size, ack wait, breaker, backoff, cache lifetimes); zero values
// take the defaults documented on verify.Settings.
type VerifyOptions struct {
	verify.Settings
}

// startVerify wires the verify role: one Verifier consuming the shared
// "verify" consumer, its metrics in the process registry.
func (s *System) startVerify(ctx context.Context) error {
	set := s.opts.Verify.Settings
	set.Replicas = max(set.Replicas, s.opts.Stream.Replicas)
	v, err := verify.New(verify.Config{
		JetStream: s.js,
		Campaigns: providerRule{s.campaigns, &s.opts.Config},
		Hasher:    s.hasher,
		Sealer:    s.sealer,
		// Registered people let a seen claim skip the provider.
		Registrations: &postgres.RegistrationStore{Pool: s.pool},
		DeadLetters:   &postgres.DeadLetterStore{Pool: s.pool},
		Logger:        s.log.With(slog.String("role", "verify")),
		Registerer:    s.registry,
		Now:           s.now,
		Settings:      set,
	})
	if err != nil {
		return err
	}
	if err := s.run(ctx, v); err != nil {
		return err
	}
	s.mu.Lock()
	s.ready = append(s.ready, v.Ready) // false while stopped for a missing key
	s.mu.Unlock()
	return nil
}

// providerRule hands verify only campaigns whose identity providers pass
// config.CheckProviderURL: outside demo and dev, a provider reached in the
// clear is refused before any token is sent to it. Its intents wait in the
// stream (verify retries) until the campaign is loaded with https URLs.
type providerRule struct {
	campaigns *postgres.CampaignStore
	cfg       *config.Config
}

func (p providerRule) Get(ctx context.Context, id string) (*campaign.Campaign, error) {
	c, err := p.campaigns.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, pr := range c.Providers {
		if err := p.cfg.CheckProviderURL(pr.URL); err != nil {
			return nil, fmt.Errorf("campaign %s, provider %s: %w", id, pr.Name, err)
		}
	}
	return c, nil
}
