// Package verify is the stage between intake and dedupe: it exchanges each
// submitted intent's identity token with the identity provider the intent
// names, and publishes exactly one prereg.Outcome per intent on
// intents.verified.<shard of the identity key>.
//
// # Flow of one message
//
// One durable pull consumer ("verify", shared by every verify process)
// reads INTENTS_SUBMITTED. A dispatcher decodes each intent and hands it
// to the pool of its (campaign, provider): a bounded queue and exactly
// Concurrency workers (the bulkhead), a token-bucket rate limit and a
// gobreaker v2 circuit breaker. A worker
//
//  1. opens the sealed phone (AAD = campaign id) and keeps only its keyed
//     hash (E.164 digits, under the campaign's pinned HMAC key), which every
//     outcome carries for dedupe's per-phone cap (Outcome.PhoneKey),
//  2. looks the token up in KV bucket verify_tokens: a token already
//     verified is not sent to the provider again,
//  3. else looks the claim (campaign, provider, claimed birth date, phone,
//     device) up in verify_claims: a claim that an earlier intent had
//     verified (verdict verified, phone confirmed) becomes a
//     duplicate/claim_seen outcome carrying that verification's identity
//     key, without a call, once that person is registered (until then the
//     message waits ClaimWaits × ClaimWait, then is verified after all).
//     Skipping the provider can therefore only ever produce a duplicate.
//     The device is part of the claim because birth date and phone alone
//     do not tell people apart: twins who give the family's one phone
//     would share a claim, and the second would be refused as a duplicate
//     of the first without the provider ever seeing them;
//  4. else calls the provider (POST {url}/v1/verify),
//  5. publishes the outcome with Nats-Msg-Id = receipt and waits for the
//     stream's ack, and only then acknowledges the submitted message, so a
//     crash (or a lost ack) between the two leads to a redelivery whose
//     outcome the stream drops as a duplicate: AckWait (30 s) is well
//     inside the stream's duplicate window (2 min).
//
// # Tokens from a sign-in page
//
// A token the citizen got from the provider's sign-in page (the page at
// / sends the browser there) is bound to the campaign it was issued for,
// to the browser's device id and to a short life, and the provider's
// answer says so (campaign, device, expires). Verify rejects such a token
// (binding.go) as token_campaign when the intent is for another campaign,
// token_device when the device that submitted is not the one the token
// was issued to (compared as device keys: intake's keyed hash of the
// device id, keys.Hasher.DeviceKey), and token_expired when it had
// expired when intake accepted the intent (Intent.ReceivedAt, not
// verify's clock, so a backlog never spoils a good token). The binding is
// remembered with the answer, so a cached token is held to it too. A
// token that names no campaign (an app's, pasted by an API client) is
// bound to nothing.
//
// # Failures and MaxDeliver
//
// The consumer has MaxDeliver -1: JetStream would count every NAK made
// while a breaker is open as a delivery, and a long outage would turn good
// intents into unprocessable ones. Instead verify counts, per receipt in
// KV bucket verify_attempts, only the failures the message itself can be
// to blame for. After MaxAttempts counted failures, or at once for a
// payload that is not an intent, the message ends as Outcome{rejected,
// unprocessable}, published like any other outcome and then acknowledged.
// Every retry is a NAK with a capped full-jitter delay (worker.Backoff),
// so a waiting message rests in the stream.
//
// # Which answers count against whom
//
// Each outcome of a call (or of the work around it) counts against the
// intent (its attempts), against the provider (its breaker), or neither:
//
//	answer                                 intent        breaker
//	200 with a readable answer             -             success
//	422 invalid_token                      - (decided)   success
//	5xx, 408, 429, timeout, transport
//	  error, unreadable 200                if healthy    failure
//	other 4xx (400, 401, 403, 404, ...)    if healthy    success while refusals
//	                                                     are rare, failure once
//	                                                     they are widespread
//	breaker open or half-open full         -             -
//	bulkhead full, rate limit, shutdown    -             -
//	sealed phone that does not open,
//	  unknown campaign or provider,
//	  answer without identity              counted       -
//	JetStream or PostgreSQL unreachable    -             -
//	payload that is not an intent          decided unprocessable at once
//
// "If healthy" means the same provider is otherwise healthy at that
// moment: its breaker is closed, the rolling window holds at least
// MinRequests answers, and both its failure rate and its share of refused
// tokens are below half the trip ratio; and, for a message that failed
// before, the provider answered the others at least as well as it failed
// them since that failure. The last part matters when an outage begins:
// the window is still full of the successes before it, and the few
// intents in flight would otherwise spend all their attempts on fast
// retries before the failures weigh enough to show. A refusal of one
// token while the provider answers everyone else is that intent's fault;
// a refusal of most tokens is the provider's or the path's (a rotated
// credential, a WAF, a changed API). Refusals are counted per distinct token over the window,
// so one intent retried does not look like a storm; once at least
// MinRequests distinct tokens were refused and they are at least the trip
// ratio of the window's answers, refusals count as breaker failures and
// the breaker opens at once. While it is open, or refusals are neither
// rare nor widespread, no intent loses an attempt: it waits in the stream
// like during any outage.
//
// # Recovery
//
// The consumer is read through a stream.Feed: when the iterator fails
// (missed heartbeats, the consumer deleted, a leader change, a server
// restart), the Feed declares the consumer again and opens a new iterator,
// with backoff, for as long as it takes. Trouble with JetStream or
// PostgreSQL is logged once per change of state (worker.Health), and
// State tells /readyz whether the stage can make progress.
//
// # Provider health
//
// Each pool reports its breaker state and its error rate over the
// breaker's window to Prometheus and to KV bucket provider_health, key
// "<campaign>.<provider>", value {"state","error_rate","updated"}; the
// intake reads it for the campaign endpoint's per-provider light. Several
// verify processes write the same key; the latest writer wins.
package verify
