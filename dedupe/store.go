package dedupe

import (
	"context"
	"time"

	"github.com/prereg/prereg"
)

// Store is the database dedupe decides against. PostgreSQL implements it
// (postgres.DedupeStore); its unique keys are the truth the Bloom filters
// only shortcut.
type Store interface {
	// Decide runs fn on one connection as one transaction (but for
	// CountDevices, which commits first); an error from fn rolls it back.
	Decide(ctx context.Context, fn func(tx Tx) error) error
	// RegisteredKeys calls fn with the identity key of every registration
	// of the campaign in the given shards (all shards when shards is nil).
	RegisteredKeys(ctx context.Context, campaign string, shards []int, fn func(identityKey string)) error
}

// Tx is one batch's transaction. A method that returns what the database
// knows costs one round trip whatever the batch size; a method that only
// writes may be sent with the next one's round trip, or with the commit,
// and its error may then come back from there.
type Tx interface {
	// People reads what is known of each person: their registration and
	// the devices that sent for them in any window.
	People(ctx context.Context, keys []PersonKey) (map[PersonKey]*Person, error)
	// CountDevices records that each pair's device sent for its person,
	// giving a new pair the next rank of its device in its window, under a
	// lock that every worker shares. It returns, per pair, the person's
	// rank on the device and the device's distinct people in the window.
	// It is called first: the pairs commit in a short transaction of
	// their own, before the rest of the batch, which releases the locks.
	CountDevices(ctx context.Context, pairs []Pair) ([]DeviceCount, error)
	// Register inserts registrations in one statement. A
	// person registered meanwhile (the unique key fired) comes back with
	// Inserted false and the existing registration.
	Register(ctx context.Context, regs []NewRegistration) ([]Registration, error)
	// Record inserts decisions, ignoring those already recorded (a
	// replay), and returns how many were new.
	Record(ctx context.Context, ds []Decision) (int, error)
	// UpdateContact replaces registrations' phones (the contact rule).
	UpdateContact(ctx context.Context, cs []Contact) error
	// CountBloom adds to the shard's Bloom filter counters.
	CountBloom(ctx context.Context, cs []BloomCount) error
	// Phones locks the phones against every other worker until the
	// transaction ends, and returns, per phone, the identity keys of the
	// people registered with it (the per-phone cap). A phone nobody is
	// registered with comes back with an empty set.
	Phones(ctx context.Context, phones []PhoneKey) (map[PhoneKey]map[string]bool, error)
	// Look is People and Phones in one round trip.
	Look(ctx context.Context, people []PersonKey, phones []PhoneKey) (map[PersonKey]*Person, map[PhoneKey]map[string]bool, error)
	// TakePhones records that each person is registered with the phone,
	// in the transaction that inserts the registration; a slot already
	// held (a replay) stays as it is.
	TakePhones(ctx context.Context, slots []PhoneSlot) error
}

// PhoneKey names a phone in a campaign by its keyed hash
// (prereg.Outcome.PhoneKey), never by its number.
type PhoneKey struct {
	Campaign string
	Phone    string
}

// PhoneSlot is one person registered with a phone: one of the phone's
// limits.phone_cap slots.
type PhoneSlot struct {
	Campaign    string
	PhoneKey    string
	IdentityKey string
	Receipt     string // the submission that registered the person
}

// PersonKey names a person in a campaign.
type PersonKey struct {
	Campaign    string
	IdentityKey string
}

// Person is what the database knows of a person.
type Person struct {
	Registration *Registration // nil when not registered
	// Devices that sent for the person in any window, each with the
	// submission that first paired them.
	Devices map[string]string
}

// Registration is a person's registration as dedupe needs it.
type Registration struct {
	ID            int64
	Campaign      string
	IdentityKey   string
	FirstReceipt  string
	DeviceKey     string
	PhoneVerified bool
	// Inserted is true when Register created it in this transaction.
	Inserted bool
}

// Pair is one device sending for one person in a window.
type Pair struct {
	Campaign    string
	Window      string
	DeviceKey   string
	IdentityKey string
	Receipt     string // the submission that first paired them
}

// DeviceCount is what CountDevices returns for a pair.
type DeviceCount struct {
	Rank   int // 1 for the first person the device sent for in the window
	People int // distinct people the device sent for in the window
}

// NewRegistration is a registration to insert: the person's first
// verified submission that was not held.
type NewRegistration struct {
	Campaign      string
	IdentityKey   string
	Shard         int
	Window        string
	Birthdate     time.Time
	Region        string
	Clinic        string
	Earliest      *time.Time
	Phone         prereg.Sealed
	PhoneVerified bool
	FirstReceipt  string
	DeviceKey     string
	ReceivedAt    time.Time
}

// Decision is one row of the decisions table.
type Decision struct {
	Campaign       string
	Receipt        string
	Shard          int
	Window         string
	Kind           prereg.Kind
	Reason         prereg.Reason
	Provider       string
	IdentityKey    string // "" when the provider gave no identity
	RegistrationID int64  // 0 for none
	MatchedReceipt string // duplicates: the registration's first submission
	DeviceKey      string
	AddrKey        string
	Birthdate      *time.Time // claimed
	Region         string
	// Held decisions keep what a release needs to register the person.
	Clinic        string
	Earliest      *time.Time
	Phone         prereg.Sealed
	PhoneVerified bool
	ReceivedAt    time.Time
	DecidedAt     time.Time
	// PhoneKey is kept on held decisions only: a release takes the
	// phone's slot like any registration.
	PhoneKey string
}

// Contact is a registration's new phone under the contact rule.
type Contact struct {
	RegistrationID int64
	Phone          prereg.Sealed
}

// BloomCount is what one batch adds to a shard's Bloom counters.
type BloomCount struct {
	Campaign       string
	Shard          int
	MaybeSeen      int
	FalsePositives int
}
