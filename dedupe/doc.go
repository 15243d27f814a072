// Package dedupe is the stage that turns every verified outcome into
// exactly one decision: registered, duplicate (with the registration it
// matched and why), held for review, or rejected.
//
// # Shards and filters
//
// The identity-key space is split into the campaign's shards; verify
// publishes each outcome on intents.verified.<shard>. A Worker consumes a
// set of shards with one durable pull consumer (several filter subjects),
// so one process may own every shard or several processes may split them.
// Per (campaign, shard) the worker keeps a Bloom filter of the identity
// keys registered so far, sized from the campaign (expected people / shards
// at the campaign's false-positive rate) and rebuilt from PostgreSQL at
// start — never persisted anywhere else. A person the filter has
// definitely never seen goes straight to the batch's one insert of new
// registrations; a "maybe seen" is settled by one lookup per batch. PostgreSQL's unique key on
// (campaign, identity_key) stays the truth: a false positive costs a
// lookup, never a registration, and a stale filter (another process
// registered the person, or an operator released a held submission) is
// caught by the insert's ON CONFLICT and decided as a duplicate.
//
// # Decisions
//
//   - rejected: verify's rejection, with its reason (invalid_token,
//     birthdate_mismatch, not_in_cohort, unprocessable).
//   - duplicate: the person is already registered. same_device when this
//     device already sent for the person (a resubmission); proxy when the
//     device also sent for other people in the window; other_device
//     otherwise; claim_seen when verify decided it without calling the
//     provider. matched_receipt is the registration's first submission.
//   - held/device_limit: the device sent for more distinct people in the
//     window than the campaign's device cap, and this person came after the
//     cap was reached. The count is shared by every worker (the
//     device_people table), because devices are not sharded by identity.
//     A held decision keeps what a release needs to register the person.
//   - held/phone_cap: the person is not registered and the submission's
//     phone (its keyed hash, Outcome.PhoneKey) already has the campaign's
//     limits.phone_cap people registered with it. The count is shared by
//     every worker (phone_people, locked per phone in the registration's
//     transaction; see phones.go): device ids rotate at will, phones are
//     where the SMS goes.
//   - held/claim_seen: verify skipped the provider for a person who is
//     still not registered after every delivery of the message (waiting,
//     with a doubling delay, for the verified submission it was seen
//     with): skipping verification may never produce a registration, so
//     an operator decides.
//   - registered: otherwise. A proxy submission under the cap that is the
//     person's first registers normally.
//
// # Contact rule
//
// A registration keeps the phone of the person's first verified
// submission. A later verified submission with another phone is recorded
// (its decision keeps its own sealed phone) but changes nothing, unless
// the identity provider verified that phone as the person's own
// (Outcome.PhoneVerified) and the registration's phone is not: then the
// provider-verified phone replaces it. Between two provider-verified
// phones the first stays. claim_seen outcomes never change the contact.
//
// # Idempotence
//
// A batch's device counts are taken in a short transaction of their own
// (the device rows are shared by every worker, so their locks must be
// brief), then its decisions in one transaction on the same connection,
// acknowledged after the commit. A decided batch redelivered after a crash
// is recorded through a staging table (postgres.DedupeStore.Record).
// Every write is idempotent (decisions ON CONFLICT (campaign, receipt) DO
// NOTHING, registrations ON CONFLICT (campaign, identity_key) DO NOTHING,
// device ranks stored, and pairs first made by the batch itself ignored
// when telling same_device from other_device), so a batch redelivered
// after a crash between commit and ack leaves the first decisions in
// place and registers nobody twice.
//
// # Failures
//
// An error that means PostgreSQL (or JetStream) could not do its part
// (worker.Unavailable: connection refused or cut, pool acquire failure,
// timeouts, errors pgx marks safe to retry, shutdown and resource
// SQLSTATEs, deadlocks and serialization failures) never counts against an
// outcome: the worker holds the batch in progress, waits with capped
// backoff and a probe for as long as the outage lasts, logs it once per
// change of state, and reports "waiting on postgresql" to /readyz. The
// consumer's MaxDeliver is unlimited, since an outage redelivers messages
// without their fault; the worker counts each outcome's own tries (a
// statement that fails for the data's sake, a claim_seen waiting for its
// verification) and after Config.MaxDeliver of them decides it
// rejected/unprocessable. An outcome that does not decode is decided so at
// once, its receipt taken from the Nats-Msg-Id header; only a message
// without a receipt or campaign, or for a campaign that is not loaded,
// is terminated, since there is nothing to record it in.
package dedupe
