package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
)

// Names that other stages and operators rely on.
const (
	// ConsumerName is the durable pull consumer on INTENTS_SUBMITTED that
	// every verify process shares.
	ConsumerName = "verify"
	// BucketTokens remembers the provider's answer per token (hashed).
	BucketTokens = "verify_tokens"
	// BucketClaims remembers claims that a verification confirmed.
	BucketClaims = "verify_claims"
	// BucketAttempts counts the failures each message is to blame for.
	BucketAttempts = "verify_attempts"
)

// Campaigns is where verify reads a campaign (postgres.CampaignStore).
type Campaigns interface {
	Get(ctx context.Context, id string) (*campaign.Campaign, error)
}

// Opener opens sealed values (keys.Sealer).
type Opener interface {
	Open(v prereg.Sealed, aad []byte) ([]byte, error)
}

// Registrations tells whether a person is registered
// (postgres.RegistrationStore; a read replica serves in production).
type Registrations interface {
	Registered(ctx context.Context, campaign, identityKey string) (bool, error)
}

// Config is what New needs: the dependencies and the Settings.
type Config struct {
	JetStream jetstream.JetStream
	Campaigns Campaigns
	// Hasher makes the keyed hashes: each campaign's identity, token and
	// claim keys under the key it is pinned to (campaign.Campaign.HMACKey).
	Hasher *keys.Hasher
	// Sealer opens phones under any configured key (keys.Sealer).
	Sealer Opener
	// Registrations, when set, lets a claim already verified be decided as
	// claim_seen without a call, but only for a person already registered:
	// a duplicate of someone whose earlier submission was held or is still
	// on its way could never be resolved without the provider. Without it
	// every claim is verified.
	Registrations Registrations
	// DeadLetters records a message that is no intent before it is
	// terminated; when nil it is terminated with a log line only.
	DeadLetters DeadLetters
	Logger      *slog.Logger
	// Registerer takes the stage's metrics; a private registry when nil.
	Registerer prometheus.Registerer
	// Now is the clock for outcomes and health; time.Now when nil.
	Now func() time.Time
	Settings
}

// Settings tune the stage. Zero values take the defaults in brackets.
type Settings struct {
	// Batch is how many messages the consumer buffers ahead [64].
	Batch int
	// AckWait is how long a delivered message may go unacknowledged
	// before JetStream redelivers it [30s]; it also bounds one message's
	// work.
	AckWait time.Duration
	// MaxAckPending bounds messages delivered and not yet acknowledged,
	// NAK-delayed ones included [20000]. Messages of a provider that is
	// down wait as NAK-delayed pending messages, so keep this above the
	// backlog one provider can build up, or the others slow down with it.
	MaxAckPending int
	// MaxAttempts is how many failures a message may be to blame for
	// before it ends as unprocessable [5].
	MaxAttempts int
	// BackoffBase and BackoffCap shape the NAK delays: full jitter,
	// uniform in [0, min(cap, base·2^deliveries)) [250ms, 30s].
	BackoffBase time.Duration
	BackoffCap  time.Duration
	Breaker     BreakerSettings
	// ClaimWaits is how many times a claim already verified for a person
	// not yet registered is put back for ClaimWait before the provider is
	// called after all [3, 1s]: the person's first submission is usually
	// a second away from its registration, and a wait is cheaper than a
	// paid call. A person whose first submission was held is called for
	// after the waits, so a seen claim never blocks anyone for long.
	ClaimWaits int
	ClaimWait  time.Duration
	// CampaignTTL is how long a campaign read from the store is reused [30s].
	CampaignTTL time.Duration
	// HealthEvery is how often provider health is written to KV even when
	// it did not change [5s]; changes of breaker state are written at once.
	HealthEvery time.Duration
	// TokenTTL and ClaimTTL bound how long verified tokens and claims are
	// remembered [24h, 7 days]; AttemptsTTL the failure counters [24h].
	TokenTTL    time.Duration
	ClaimTTL    time.Duration
	AttemptsTTL time.Duration
	// StopTimeout bounds Stop: work still running after it is cancelled
	// (and its messages redelivered later) [15s].
	StopTimeout time.Duration
	// Replicas of the KV buckets [1].
	Replicas int
	// ProviderCallsPerPrefix and ProviderCallsPerCampaign are the spend
	// guard's budgets (spend.go): provider calls per client address prefix
	// per minute [60] and per campaign per second [1000], in this process.
	// A call over budget waits; negative disables the budget.
	ProviderCallsPerPrefix   int
	ProviderCallsPerCampaign float64
}

// BreakerSettings configure each provider's circuit breaker.
type BreakerSettings struct {
	// MinRequests completed calls in the window before the breaker may
	// trip [20].
	MinRequests uint32
	// FailureRatio of failed calls in the window that trips it [0.5].
	FailureRatio float64
	// Window is the rolling window the ratio is measured over, in Buckets
	// steps [10s, 10].
	Window  time.Duration
	Buckets int
	// OpenFor is how long the breaker stays open before half-open [10s].
	OpenFor time.Duration
	// HalfOpenRequests is how many probes half-open admits; that many
	// successes in a row close it again [3].
	HalfOpenRequests uint32
}

func (s Settings) withDefaults() Settings {
	s.Batch = cmp.Or(s.Batch, 64)
	s.AckWait = cmp.Or(s.AckWait, 30*time.Second)
	s.MaxAckPending = cmp.Or(s.MaxAckPending, 20000)
	s.MaxAttempts = cmp.Or(s.MaxAttempts, 5)
	s.BackoffBase = cmp.Or(s.BackoffBase, 250*time.Millisecond)
	s.BackoffCap = cmp.Or(s.BackoffCap, 30*time.Second)
	s.Breaker.MinRequests = cmp.Or(s.Breaker.MinRequests, 20)
	s.Breaker.FailureRatio = cmp.Or(s.Breaker.FailureRatio, 0.5)
	s.Breaker.Window = cmp.Or(s.Breaker.Window, 10*time.Second)
	s.Breaker.Buckets = cmp.Or(s.Breaker.Buckets, 10)
	s.Breaker.OpenFor = cmp.Or(s.Breaker.OpenFor, 10*time.Second)
	s.Breaker.HalfOpenRequests = cmp.Or(s.Breaker.HalfOpenRequests, 3)
	s.ClaimWaits = cmp.Or(s.ClaimWaits, 3)
	s.ClaimWait = cmp.Or(s.ClaimWait, time.Second)
	s.CampaignTTL = cmp.Or(s.CampaignTTL, 30*time.Second)
	s.HealthEvery = cmp.Or(s.HealthEvery, 5*time.Second)
	s.TokenTTL = cmp.Or(s.TokenTTL, 24*time.Hour)
	s.ClaimTTL = cmp.Or(s.ClaimTTL, 7*24*time.Hour)
	s.AttemptsTTL = cmp.Or(s.AttemptsTTL, 24*time.Hour)
	s.StopTimeout = cmp.Or(s.StopTimeout, 15*time.Second)
	s.Replicas = cmp.Or(s.Replicas, 1)
	s.ProviderCallsPerPrefix = cmp.Or(s.ProviderCallsPerPrefix, 60)
	s.ProviderCallsPerCampaign = cmp.Or(s.ProviderCallsPerCampaign, 1000)
	return s
}

func (s Settings) validate() error {
	switch {
	case s.Batch < 1:
		return errors.New("verify: Batch must be positive")
	case s.MaxAckPending < 1:
		return errors.New("verify: MaxAckPending must be positive")
	case s.MaxAttempts < 1:
		return errors.New("verify: MaxAttempts must be positive")
	case s.BackoffCap < s.BackoffBase:
		return fmt.Errorf("verify: BackoffCap %s is below BackoffBase %s", s.BackoffCap, s.BackoffBase)
	case s.Breaker.FailureRatio <= 0 || s.Breaker.FailureRatio > 1:
		return errors.New("verify: Breaker.FailureRatio must be in (0, 1]")
	case s.Breaker.Buckets < 1 || s.Breaker.Window < time.Duration(s.Breaker.Buckets):
		return errors.New("verify: Breaker.Window must hold at least one nanosecond per bucket")
	}
	return nil
}
