// Package intake is the only stage the surge touches: it checks an intent
// (strict JSON, field by field, the campaign's birth-date window, per-device
// and per-address token buckets), gives it a receipt, publishes it to
// JetStream with Nats-Msg-Id = the receipt, and answers 202 only after the
// stream's ack. It never touches the database on the submit path: campaigns
// are kept in memory and refreshed in the background (while the refreshes
// fail, the last good campaigns are served up to campaign.Cache's bound,
// then answered 503), and when JetStream
// slows down, is unreachable or its stream is full, intake sheds load with
// 503 and Retry-After instead of queueing in memory; so it does when the
// process has less CPU than its requests need (lag.go).
//
// It also serves the citizen page (GET /), the campaign with its windows and
// providers' health (GET /v1/campaigns/{id}, from memory, with an ETag),
// its regions and clinics (…/regions, …/clinics?region=, encoded once per
// campaign load, clinics.go), and
// the status lookup (GET /v1/intents/{receipt}?birthdate=…), the one read of
// the database, through the StatusReader a store implements. A receipt
// carries its own MAC, so a forged one is answered 404 without a query;
// a real one locks after a few wrong birth dates, counted in a JetStream
// bucket every replica shares (lockout.go). An Idempotency-Key's first
// body is recorded in another such bucket before publishing, so a reuse
// of the key with another body is refused for the campaign's life.
//
// The citizen page's forms work without JavaScript too: POST /submit and
// POST /lookup run the JSON handlers and answer with the page, the answer
// in it in the page's language (page_forms.go, docs/PAGE.md).
//
// A process that runs intake listens with fasthttp (fast.go): submissions
// are served natively, every other route by the same net/http handlers;
// submit is the one implementation of the checks for both servers.
//
// See docs/STREAMS.md for what a 202 promises in each JetStream
// configuration.
package intake
