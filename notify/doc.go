// Package notify is the last stage of the pipeline: it drains the SMS
// outbox that the scheduler wrote beside each appointment, renders the text
// (Korean or English, SMS up to 90 bytes in EUC-KR, else LMS up to 2,000),
// and hands it to the SMS gateway behind a circuit breaker and the
// account's rate limit.
//
// Exactly-once at the handset rests on three things:
//
//   - Claims are leases taken with FOR UPDATE SKIP LOCKED, so several
//     workers (in one process or many) never hold the same row; a worker
//     sends only while its lease runs, so a row whose lease ran out and was
//     reclaimed is never in flight twice.
//   - Every message carries an idempotency key derived from the appointment
//     and its version (prereg.OutboxKey). A crash between the gateway's
//     accept and the mark-sent makes the next worker send the same key
//     again, which a gateway that honours keys answers with the first
//     message instead of a second SMS.
//   - A reclaim after an unfinished attempt, and a retry after a call whose
//     answer never came (a timeout, a cut connection), are the only paths
//     to a second send; both are counted on the row (unconfirmed_sends)
//     and in the worker's Stats, so with a gateway that ignores keys the
//     duplicates they can cause are reported, never silent.
//
// The gateway's delivery reports arrive on POST /v1/sms/reports, signed
// with an HMAC over the timestamp and body (see Sign and ReportHandler),
// and move the message to delivered; the reports that arrive together are
// recorded together (reportbatch.go). An operator's resend adds a new
// version of the message, recorded with who asked and why.
package notify
