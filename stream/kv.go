package stream

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Key-value buckets: the state about receipts that every intake replica
// must share, kept by JetStream so that the submit path never touches the
// database (docs/DESIGN.md, "Receipts and idempotency").
const (
	// ReceiptBodies holds, for each receipt given for an Idempotency-Key,
	// a keyed hash of the body it was first given for. The entry is
	// created once (Create fails when it exists) and expires with
	// Config.ReceiptBodiesMaxAge, which must outlast the campaign: a reuse
	// of the key with another body is refused for as long as the receipt
	// can be replayed, after the submitted stream's duplicate window and
	// after verify consumed the first message.
	ReceiptBodies = "RECEIPT_BODIES"
	// ReceiptLookups holds, for each receipt whose status was looked up,
	// the count of wrong birth dates and the end of its lockout, so that
	// the lookup is not a birth-date oracle on any replica. Entries expire
	// Config.ReceiptLookupsMaxAge after their last change.
	ReceiptLookups = "RECEIPT_LOOKUPS"
)

// ReceiptBodiesConfig is the declaration of the ReceiptBodies bucket.
func ReceiptBodiesConfig(c Config) jetstream.KeyValueConfig {
	c = c.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:       ReceiptBodies,
		Description:  "the first body of each idempotent receipt, as a keyed hash",
		MaxValueSize: 256, // the value and the headers of a compare-and-set
		TTL:          c.ReceiptBodiesMaxAge,
		MaxBytes:     c.ReceiptBodiesMaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     c.Replicas,
	}
}

// ReceiptLookupsConfig is the declaration of the ReceiptLookups bucket.
// Its size is bounded: when full, lookups of receipts not in it yet are
// refused (503) rather than left uncounted.
func ReceiptLookupsConfig(c Config) jetstream.KeyValueConfig {
	c = c.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:       ReceiptLookups,
		Description:  "wrong birth dates and lockouts per receipt",
		MaxValueSize: 256, // the value and the headers of a compare-and-set
		TTL:          c.ReceiptLookupsMaxAge,
		MaxBytes:     c.ReceiptLookupsMaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     c.Replicas,
	}
}

// declareBuckets creates or updates the receipt buckets.
func declareBuckets(ctx context.Context, js jetstream.JetStream, c Config) error {
	for _, kc := range []jetstream.KeyValueConfig{ReceiptBodiesConfig(c), ReceiptLookupsConfig(c)} {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("declare bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}
