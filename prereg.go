// Package prereg holds the domain types that every stage of the pipeline
// shares: the intent a citizen submits, the outcome of its verification, the
// decision dedupe records, and the statuses a citizen can look up.
//
// The flow is intake → verify → dedupe → scheduler → notify; see doc.go and
// docs/ for the whole picture. This package imports nothing of the project.
package prereg

import (
	"errors"
	"strconv"
	"time"
)

// DateLayout is the layout of every calendar date on the wire and in the
// campaign file: birth dates, earliest dates, appointment days.
const DateLayout = "2006-01-02"

// Sealed is a value encrypted with AES-GCM under the key named by KeyID.
// Phones travel and rest only in this form (docs/DESIGN.md, "Data protection").
type Sealed struct {
	KeyID string `json:"kid"`
	Data  []byte `json:"data"` // nonce || ciphertext || tag
}

// Intent is what intake publishes on intents.submitted.<shard> once the
// request is valid and inside its window. The identity token is the only
// field in plain form that verify needs and nothing downstream may keep.
type Intent struct {
	Receipt       string    `json:"receipt"`
	Campaign      string    `json:"campaign"`
	Window        string    `json:"window"`
	Provider      string    `json:"provider"`
	IdentityToken string    `json:"identity_token"`
	Birthdate     string    `json:"birthdate"` // claimed, YYYY-MM-DD
	Phone         Sealed    `json:"phone"`
	Region        string    `json:"region"`
	Clinic        string    `json:"clinic,omitempty"`
	Earliest      string    `json:"earliest,omitempty"`
	DeviceKey     string    `json:"device_key"`         // keyed hash of the device id
	AddrKey       string    `json:"addr_key,omitempty"` // keyed hash of the client address
	ReceivedAt    time.Time `json:"received_at"`
}

// Verdict is what verify concluded about an intent.
type Verdict string

// The verdicts verify publishes on intents.verified.<shard>.
const (
	VerdictVerified  Verdict = "verified"
	VerdictRejected  Verdict = "rejected"
	VerdictDuplicate Verdict = "duplicate" // claim_seen: decided without calling the provider
)

// Outcome is what verify publishes on intents.verified.<shard of identity>.
// Every submission that verify consumed yields exactly one outcome (the
// stream de-duplicates republishes by Receipt), and dedupe turns each into
// exactly one Decision. It carries no identity token.
type Outcome struct {
	Receipt          string    `json:"receipt"`
	Campaign         string    `json:"campaign"`
	Window           string    `json:"window"`
	Provider         string    `json:"provider"`
	Verdict          Verdict   `json:"verdict"`
	Reason           Reason    `json:"reason,omitempty"`
	IdentityKey      string    `json:"identity_key,omitempty"` // hex HMAC-SHA-256 of the provider's person id
	TokenKey         string    `json:"token_key,omitempty"`    // keyed hash of the identity token
	Birthdate        string    `json:"birthdate"`              // verified when verified, else claimed
	ClaimedBirthdate string    `json:"claimed_birthdate"`
	Phone            Sealed    `json:"phone"`
	PhoneVerified    bool      `json:"phone_verified,omitempty"` // the provider confirmed the phone is the person's own
	Region           string    `json:"region"`
	Clinic           string    `json:"clinic,omitempty"`
	Earliest         string    `json:"earliest,omitempty"`
	DeviceKey        string    `json:"device_key"`
	AddrKey          string    `json:"addr_key,omitempty"`
	ReceivedAt       time.Time `json:"received_at"`
	DecidedAt        time.Time `json:"decided_at"` // when verify produced this outcome
	// PhoneKey is the keyed hash of the intent's phone (its E.164 digits,
	// under the campaign's pinned HMAC key): what dedupe's per-phone cap
	// counts. Never the phone itself; "" when the phone did not open.
	PhoneKey string `json:"phone_key,omitempty"`
}

// Kind is the kind of a Decision.
type Kind string

// The four decisions every accepted submission ends in (invariant 1).
const (
	KindRegistered Kind = "registered"
	KindDuplicate  Kind = "duplicate"
	KindHeld       Kind = "held"
	KindRejected   Kind = "rejected"
)

// Reason says why a submission was decided the way it was.
type Reason string

// Reasons for duplicate, held and rejected decisions.
const (
	ReasonNone Reason = ""

	// Duplicates: the person is already registered.
	ReasonSameDevice  Reason = "same_device"  // a resubmission from a device the person already used
	ReasonOtherDevice Reason = "other_device" // the same person from another device
	ReasonProxy       Reason = "proxy"        // from a device that also submitted for other people
	ReasonClaimSeen   Reason = "claim_seen"   // decided by verify without calling the provider

	// Held for review.
	ReasonDeviceLimit Reason = "device_limit" // the device is over the per-window cap of distinct people

	// Rejected.
	ReasonInvalidToken      Reason = "invalid_token"
	ReasonBirthdateMismatch Reason = "birthdate_mismatch" // a window jump
	ReasonNotInCohort       Reason = "not_in_cohort"
	ReasonUnprocessable     Reason = "unprocessable" // still failing after MaxDeliver
	ReasonOperatorRejected  Reason = "operator_rejected"

	// Held for review: the phone already has the campaign's cap of people
	// registered with it (campaign limits.phone_cap).
	ReasonPhoneCap Reason = "phone_cap"
)

// Status is what a citizen sees for a receipt.
type Status string

// The statuses of docs/DESIGN.md, "HTTP".
const (
	StatusReceived   Status = "received"
	StatusRegistered Status = "registered"
	StatusDuplicate  Status = "duplicate"
	StatusHeld       Status = "held"
	StatusRejected   Status = "rejected"
	StatusUnassigned Status = "unassigned"
	StatusScheduled  Status = "scheduled"
	StatusNotified   Status = "notified"
	StatusDelivered  Status = "delivered"
	StatusCancelled  Status = "cancelled"
)

// Rejections of a token from a provider's sign-in page, which binds it to
// a campaign, a device and a short life (verify/binding.go).
const (
	ReasonTokenCampaign Reason = "token_campaign" // issued for another campaign
	ReasonTokenDevice   Reason = "token_device"   // issued to another device than the one that submitted
	ReasonTokenExpired  Reason = "token_expired"  // expired before intake accepted the intent
)

// Errors that callers act on across stages. The HTTP handlers answer each
// with its status and code from one table (httpapi.ErrorCode).
var (
	ErrNotFound         = errors.New("not found")
	ErrCampaignNotFound = errors.New("campaign not found")
	ErrConflict         = errors.New("conflict")
)

// Error is a domain error whose message is meant for the one who asked (an
// operator refused a resend, an allocation refused while another runs):
// Kind is one of the sentinel errors above and says what to answer,
// Message says why and is shown as is. errors.Is(err, Kind) holds.
type Error struct {
	Kind    error
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the kind, so that errors.Is matches it.
func (e *Error) Unwrap() error { return e.Kind }

// Conflict returns an *Error of kind ErrConflict.
func Conflict(message string) error { return &Error{Kind: ErrConflict, Message: message} }

// NotFound returns an *Error of kind ErrNotFound.
func NotFound(message string) error { return &Error{Kind: ErrNotFound, Message: message} }

// ProviderHealthBucket is the JetStream key-value bucket where verify
// publishes each identity provider's breaker state and intake reads it for
// the campaign answer, under ProviderHealthKey.
const ProviderHealthBucket = "provider_health"

// ProviderHealthKey is the ProviderHealthBucket key of a campaign's
// provider: "<campaign>.<provider>".
func ProviderHealthKey(campaign, provider string) string { return campaign + "." + provider }

// ProviderHealth is an identity provider's breaker state: the value verify
// writes under ProviderHealthKey and the "health" of each provider in
// intake's GET /v1/campaigns/{id}. A provider verify never reported on is
// {"state":"unknown","error_rate":0}, without "updated".
type ProviderHealth struct {
	State     string    `json:"state"` // closed, half-open, open, or unknown
	ErrorRate float64   `json:"error_rate"`
	Updated   time.Time `json:"updated,omitzero"`
}

// Subjects of the durable log. Shards are decimal numbers from 0 to the
// campaign's shard count minus one.
const (
	SubjectSubmitted = "intents.submitted" // + "." + shard
	SubjectVerified  = "intents.verified"  // + "." + shard of the identity key
)

// Shard maps a key (an identity key, or a receipt for outcomes without an
// identity) to one of n shards. Verify and dedupe must agree on it, so it
// lives here: FNV-1a over the key's bytes.
func Shard(key string, n int) int {
	if n <= 1 {
		return 0
	}
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// OutboxKey is the idempotency key of one version of an appointment's SMS:
// the scheduler writes it with the outbox row and notify sends it to the
// gateway, so a retry after a crash is recognised as the same message.
func OutboxKey(campaign string, appointment int64, version int) string {
	return campaign + ":" + strconv.FormatInt(appointment, 10) + ":v" + strconv.Itoa(version)
}
