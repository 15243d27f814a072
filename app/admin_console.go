package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/console"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/verify"
)

// consoleAdminRoutes put the live console on the admin side: its page and
// assets at /admin/ (no token: they hold no data), the samples it plots
// and the caller's role (operators and auditors), and the operator's
// pause and resume of a campaign's intake. The sampler runs in every
// admin process, so that a console opened on any replica shows the last
// minutes at once.
func (s *System) consoleAdminRoutes(ctx context.Context) ([]httpapi.AdminRoute, error) {
	log := s.log.With("role", string(RoleAdmin), "stage", "console")
	sampler, err := console.New(console.Config{
		Gatherer: s.registry,
		Store:    &postgres.ConsoleStore{Pool: s.pool},
		Health:   s.providerHealth,
		// The stages' durable consumers, whose backlogs the console shows.
		VerifyConsumer:  verify.ConsumerName,
		DedupeConsumers: dedupe.DurableName(nil),
		Log:             log,
		Now:             s.now,
	})
	if err != nil {
		return nil, err
	}
	if err := s.run(ctx, sampler); err != nil {
		return nil, err
	}
	s.admin.HandleFunc("GET /admin/{$}", console.ServePage)
	s.admin.HandleFunc("GET /admin/assets/{file}", console.ServeAsset)
	pause, resume := intake.PauseHandlers(&postgres.PauseStore{Pool: s.pool}, func(r *http.Request) string {
		return string(httpapi.RoleFrom(r.Context())) + ":" + httpapi.TokenIDFrom(r.Context())
	}, s.now, log)
	anyone, operator := []config.Role{config.RoleOperator, config.RoleAuditor}, []config.Role{config.RoleOperator}
	return []httpapi.AdminRoute{
		{Pattern: "GET /admin/v1/pipeline", Roles: anyone, Handler: sampler},
		{Pattern: "GET /admin/v1/whoami", Roles: anyone, Handler: http.HandlerFunc(console.ServeWhoAmI)},
		{Pattern: "POST /admin/v1/campaigns/{campaign}/pause", Action: "intake.pause", Roles: operator, Handler: pause},
		{Pattern: "POST /admin/v1/campaigns/{campaign}/resume", Action: "intake.resume", Roles: operator, Handler: resume},
	}, nil
}

// providerHealth reads every provider's breaker state from the bucket
// verify publishes it in: the whole deployment's, whichever process
// verifies. No bucket yet (nothing verified so far) is no provider.
func (s *System) providerHealth(ctx context.Context) (map[string]prereg.ProviderHealth, error) {
	out := map[string]prereg.ProviderHealth{}
	kv, err := s.js.KeyValue(ctx, prereg.ProviderHealthBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("provider health: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("provider health: %w", err)
	}
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var h prereg.ProviderHealth
		if json.Unmarshal(e.Value(), &h) == nil {
			out[key] = h
		}
	}
	return out, nil
}
