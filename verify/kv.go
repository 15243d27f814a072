package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prereg/prereg"
)

// buckets are the stage's JetStream key-value buckets.
type buckets struct {
	tokens, claims, attempts, health jetstream.KeyValue
}

func openBuckets(ctx context.Context, js jetstream.JetStream, s Settings) (*buckets, error) {
	open := func(name, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		replicas := s.Replicas
		// A restart never scales a bucket down: an operator's (or a
		// clustered process's) replicas stay.
		if kv, err := js.KeyValue(ctx, name); err == nil {
			if st, err := kv.Status(ctx); err == nil {
				if info, ok := st.(*jetstream.KeyValueBucketStatus); ok {
					replicas = max(replicas, info.StreamInfo().Config.Replicas)
				}
			}
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: desc,
			TTL:         ttl,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("verify: kv bucket %s: %w", name, err)
		}
		return kv, nil
	}
	var b buckets
	var err error
	if b.tokens, err = open(BucketTokens, "verify: provider answers per hashed token", s.TokenTTL); err != nil {
		return nil, err
	}
	if b.claims, err = open(BucketClaims, "verify: claims confirmed by a verification", s.ClaimTTL); err != nil {
		return nil, err
	}
	if b.attempts, err = open(BucketAttempts, "verify: failures counted per message", s.AttemptsTTL); err != nil {
		return nil, err
	}
	if b.health, err = open(prereg.ProviderHealthBucket, "identity provider health, written by verify, read by intake", 0); err != nil {
		return nil, err
	}
	return &b, nil
}

// tokenAnswer is what verify remembers of a provider's answer to a token:
// the hashed identity, never the person id or the phone.
type tokenAnswer struct {
	Invalid     bool          `json:"invalid,omitempty"`
	IdentityKey string        `json:"identity_key,omitempty"`
	Birthdate   string        `json:"birthdate,omitempty"`
	PhoneKey    string        `json:"phone_key,omitempty"` // keyed hash of the provider's phone
	Bound       *tokenBinding `json:"bound,omitempty"`     // a sign-in page token's binding (binding.go)
}

// claimRecord is a claim a verification confirmed: the identity key that
// verification produced and the receipt it was for.
type claimRecord struct {
	IdentityKey string `json:"identity_key"`
	Receipt     string `json:"receipt"`
}

// getJSON reads key into v; found is false when the key is absent.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (found bool, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("decode %s: %w", kv.Bucket(), err)
	}
	return true, nil
}

func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, b)
	return err
}

// countFailure records a message's failure at now and returns its count
// of failures it is to blame for. The first failure counts; a later one
// counts only when blame, given the time of the message's previous
// failure, says so; either way the record keeps the latest failure's
// time. Compare-and-set, so two processes that fail the same message at
// once (a redelivery racing a slow worker) both count.
func countFailure(ctx context.Context, kv jetstream.KeyValue, key string, now time.Time, blame func(prev time.Time) bool) (n int, counted bool, err error) {
	for range 5 {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := kv.Create(ctx, key, failureRecord(1, now)); err == nil {
				return 1, true, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, false, err
			}
			continue
		}
		if err != nil {
			return 0, false, err
		}
		// "count unix-nanoseconds"; a record with the count alone (or
		// unreadable) has no time, and every answer since counts.
		var prev int64
		n = 0
		_, _ = fmt.Sscan(string(e.Value()), &n, &prev)
		counted = blame(time.Unix(0, prev))
		if counted {
			n++
		}
		if _, err := kv.Update(ctx, key, failureRecord(n, now), e.Revision()); err == nil {
			return n, counted, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, false, err
		}
	}
	return 0, false, errors.New("count failure: too much contention")
}

func failureRecord(n int, at time.Time) []byte {
	return fmt.Appendf(nil, "%d %d", n, at.UnixNano())
}
