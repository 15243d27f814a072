package verify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker/v2"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/stream"
)

// purposePhone separates the keyed hash of a phone from every other keyed
// hash. Verify keeps it of a provider's phone (to tell, on a cached token,
// whether the intent's phone is the person's own) and puts it of the
// intent's phone on the outcome (Outcome.PhoneKey, dedupe's per-phone cap).
const purposePhone = "verify-phone"

// decodeIntent reads a submitted intent. On error the returned intent
// holds whatever could be read, for the unprocessable outcome.
func decodeIntent(data []byte) (prereg.Intent, error) {
	var in prereg.Intent
	if err := stream.Decode(data, &in); err != nil {
		var partial struct {
			Receipt  string `json:"receipt"`
			Campaign string `json:"campaign"`
		}
		_ = json.Unmarshal(data, &partial)
		return prereg.Intent{Receipt: partial.Receipt, Campaign: partial.Campaign}, fmt.Errorf("decode intent: %w", err)
	}
	switch {
	case in.Receipt == "":
		return in, errors.New("decode intent: no receipt")
	case in.Campaign == "" || in.Provider == "" || in.IdentityToken == "":
		return in, errors.New("decode intent: campaign, provider and identity token are required")
	}
	if _, err := time.Parse(prereg.DateLayout, in.Birthdate); err != nil {
		return in, errors.New("decode intent: claimed birth date is not YYYY-MM-DD")
	}
	return in, nil
}

// process decides one intent, publishes its outcome and acknowledges it,
// or puts it back to be tried again.
func (v *Verifier) process(j job) {
	ctx, cancel := context.WithTimeout(v.workCtx, v.set.AckWait)
	defer cancel()
	in := j.in
	phone, err := v.cfg.Sealer.Open(in.Phone, []byte(in.Campaign))
	if errors.Is(err, keys.ErrUnknownKey) {
		v.keyMissing(j.msg, err)
		return
	}
	if err != nil {
		v.retry(ctx, j, true, "phone", err)
		return
	}
	digits := phoneDigits(string(phone))
	clear(phone)
	// Every key of the person is made under the campaign's pinned key, and
	// the cache of answers is keyed by it too: an answer remembered under
	// one key never gives an identity key of another. The phone's key is
	// pinned the same way, so a rotation does not reset a phone's count.
	tokenKey := j.hasher.Sum(keys.PurposeToken, in.IdentityToken)
	phoneKey := j.hasher.Sum(purposePhone, digits)
	// The device belongs to the claim: birth date and phone alone are
	// shared by twins who give the family's phone (see doc.go).
	claimKey := j.hasher.Sum(keys.PurposeClaim, in.Campaign, in.Provider, in.Birthdate, digits, in.DeviceKey)
	unlock := v.claimMu.lock(claimKey)
	defer unlock()

	// Both look-ups at once: one round trip to JetStream, not two.
	cacheKey := in.Provider + "." + tokenKey
	var seen claimRecord
	var found bool
	claimDone := make(chan struct{})
	go func() {
		defer close(claimDone)
		var err error
		found, err = getJSON(ctx, v.kv.claims, claimKey, &seen)
		v.note(v.aside, depClaimsRead, err)
	}()
	var ans tokenAnswer
	hit, err := getJSON(ctx, v.kv.tokens, cacheKey, &ans)
	v.note(v.aside, depTokensRead, err)
	<-claimDone
	v.m.cache.WithLabelValues("token", hitMiss(hit)).Inc()
	if !hit {
		seenClaim := found && seen.IdentityKey != ""
		short := seenClaim && v.registered(ctx, in.Campaign, seen.IdentityKey)
		if seenClaim && !short && deliveries(j.msg) <= uint64(v.set.ClaimWaits) {
			// Seen, but its person is not registered yet: most likely the
			// first submission is still on its way through dedupe.
			v.m.cache.WithLabelValues("claim", "pending").Inc()
			v.nakFor(j.msg, "claim_pending", v.set.ClaimWait)
			return
		}
		v.m.cache.WithLabelValues("claim", hitMiss(short)).Inc()
		if short {
			out := v.baseOutcome(in, tokenKey)
			out.PhoneKey = phoneKey
			out.Verdict, out.Reason = prereg.VerdictDuplicate, prereg.ReasonClaimSeen
			out.IdentityKey = seen.IdentityKey
			v.finish(ctx, j, out, prereg.Shard(seen.IdentityKey, j.camp.Shards), "")
			return
		}
		if ok, wait, cause := v.spend.allow(v.now(), in.Campaign, in.AddrKey); !ok {
			// Over the provider budget: back later, never held against
			// the intent (spend.go).
			v.nakFor(j.msg, cause, wait+v.backoff(deliveries(j.msg)))
			return
		}
		ans, err = v.ask(ctx, j)
		if err != nil {
			return // ask has put the message back or given up on it
		}
		v.spend.answered(v.now(), in.AddrKey, ans.Invalid)
		// Remember the answer while the outcome is published; a crash
		// before it lands costs one more call on redelivery, nothing else.
		remembered := make(chan struct{})
		defer func() { <-remembered }()
		go func() {
			defer close(remembered)
			v.note(v.aside, depTokensWrite, putJSON(ctx, v.kv.tokens, cacheKey, ans))
		}()
	}
	out, err := v.decide(in, j.camp, tokenKey, ans, phoneKey)
	if err != nil {
		v.retry(ctx, j, true, "answer", err)
		return
	}
	shard := prereg.Shard(in.Receipt, j.camp.Shards)
	if out.IdentityKey != "" {
		shard = prereg.Shard(out.IdentityKey, j.camp.Shards)
	}
	remember := ""
	if out.Verdict == prereg.VerdictVerified && out.PhoneVerified {
		remember = claimKey
	}
	v.finish(ctx, j, out, shard, remember)
}

// registered reports whether the person of a claim is registered: only
// then may the claim be decided as a duplicate without the provider (dedupe
// then finds the registration it names). Any doubt means a call.
func (v *Verifier) registered(ctx context.Context, campaign, identityKey string) bool {
	if v.cfg.Registrations == nil {
		return false
	}
	ok, err := v.cfg.Registrations.Registered(ctx, campaign, identityKey)
	v.note(v.aside, depRegistrations, err)
	if err != nil {
		return false
	}
	return ok
}

// ask calls the provider. On error the message has been dealt with: put
// back with a delay, or, after too many failures of its own, ended as
// unprocessable.
func (v *Verifier) ask(ctx context.Context, j job) (tokenAnswer, error) {
	p := j.pool
	labels := []string{p.campaign, p.provider.Name}
	start := time.Now()
	a, err := p.call(ctx, j.in.IdentityToken)
	var pe *providerError
	var re *refusedError
	switch {
	case err == nil:
		v.m.callSeconds.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
		v.m.calls.WithLabelValues(append(labels, "ok")...).Inc()
		bd, perr := time.Parse(prereg.DateLayout, a.Birthdate)
		if perr != nil {
			v.retry(ctx, j, true, "answer", errors.New("provider birth date is not YYYY-MM-DD"))
			return tokenAnswer{}, perr
		}
		return tokenAnswer{
			IdentityKey: j.hasher.Sum(keys.PurposeIdentity, a.PersonID),
			Birthdate:   bd.Format(prereg.DateLayout),
			PhoneKey:    j.hasher.Sum(purposePhone, phoneDigits(a.Phone)),
			Bound:       bindingOf(j.hasher, a),
		}, nil
	case errors.Is(err, errInvalidToken):
		v.m.callSeconds.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
		v.m.calls.WithLabelValues(append(labels, "invalid_token")...).Inc()
		return tokenAnswer{Invalid: true}, nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		v.m.calls.WithLabelValues(append(labels, "breaker_open")...).Inc()
		v.nak(j.msg, "breaker_open")
	case v.workCtx.Err() != nil:
		v.nak(j.msg, "shutdown")
	case errors.As(err, &re):
		// The intent's fault only while the provider answers others well;
		// a refusal storm opens the breaker instead (see the package doc).
		v.m.calls.WithLabelValues(append(labels, "refused")...).Inc()
		v.retryCall(ctx, j, p, "refused", err)
	case errors.As(err, &pe):
		v.m.calls.WithLabelValues(append(labels, "failure")...).Inc()
		v.retryCall(ctx, j, p, "provider_failure", err)
	default: // the rate limit's wait would outlast the message's deadline
		v.nak(j.msg, "rate_limited")
	}
	return tokenAnswer{}, err
}

// decide turns the provider's answer into an outcome; phoneKey is the
// keyed hash of the intent's phone.
func (v *Verifier) decide(in prereg.Intent, camp *campaign.Campaign, tokenKey string, ans tokenAnswer, phoneKey string) (prereg.Outcome, error) {
	out := v.baseOutcome(in, tokenKey)
	out.PhoneKey = phoneKey
	if ans.Invalid {
		out.Verdict, out.Reason = prereg.VerdictRejected, prereg.ReasonInvalidToken
		return out, nil
	}
	if r := ans.Bound.refuses(in); r != prereg.ReasonNone {
		out.Verdict, out.Reason = prereg.VerdictRejected, r
		return out, nil
	}
	if ans.IdentityKey == "" {
		return out, errors.New("remembered answer has no identity")
	}
	bd, err := time.Parse(prereg.DateLayout, ans.Birthdate)
	if err != nil {
		return out, errors.New("remembered birth date is not YYYY-MM-DD")
	}
	out.IdentityKey = ans.IdentityKey
	out.Birthdate = ans.Birthdate
	out.PhoneVerified = ans.PhoneKey != "" && ans.PhoneKey == phoneKey
	claimed, _ := time.Parse(prereg.DateLayout, in.Birthdate)
	switch {
	case !bd.Equal(claimed):
		out.Verdict, out.Reason = prereg.VerdictRejected, prereg.ReasonBirthdateMismatch
	case !camp.Cohort.Contains(bd):
		out.Verdict, out.Reason = prereg.VerdictRejected, prereg.ReasonNotInCohort
	default:
		out.Verdict = prereg.VerdictVerified
	}
	return out, nil
}

// baseOutcome copies what every outcome carries from the intent. The
// token itself never leaves this stage: only its keyed hash.
func (v *Verifier) baseOutcome(in prereg.Intent, tokenKey string) prereg.Outcome {
	return prereg.Outcome{
		Receipt:          in.Receipt,
		Campaign:         in.Campaign,
		Window:           in.Window,
		Provider:         in.Provider,
		TokenKey:         tokenKey,
		Birthdate:        in.Birthdate,
		ClaimedBirthdate: in.Birthdate,
		Phone:            in.Phone,
		Region:           in.Region,
		Clinic:           in.Clinic,
		Earliest:         in.Earliest,
		DeviceKey:        in.DeviceKey,
		AddrKey:          in.AddrKey,
		ReceivedAt:       in.ReceivedAt,
		DecidedAt:        v.now().UTC(),
	}
}

// finish publishes the outcome, remembers a confirmed claim, and only then
// acknowledges the message. When publishing fails the message is put back
// (JetStream's trouble is never the message's fault).
func (v *Verifier) finish(ctx context.Context, j job, out prereg.Outcome, shard int, claimKey string) {
	data, err := stream.Encode(out)
	if err != nil {
		v.log.Error("verify: encode outcome", slog.Any("err", err))
		v.nak(j.msg, "infrastructure")
		return
	}
	_, err = v.js.Publish(ctx, stream.VerifiedSubject(shard), data, jetstream.WithMsgID(out.Receipt))
	v.note(v.health, depOutcomes, err)
	if err != nil {
		v.nak(j.msg, "infrastructure")
		return
	}
	if claimKey != "" {
		// Only once the verified outcome is out, so that a claim_seen
		// always names a verification dedupe will see; beside the ack,
		// since a claim that is never recorded only costs a later call.
		remembered := make(chan struct{})
		defer func() { <-remembered }()
		go func() {
			defer close(remembered)
			rec := claimRecord{IdentityKey: out.IdentityKey, Receipt: out.Receipt}
			v.note(v.aside, depClaimsWrite, putJSON(ctx, v.kv.claims, claimKey, rec))
		}()
	}
	// A plain ack, not a double ack: waiting for the server's confirmation
	// cost a round trip per message and a quarter of the provider's
	// concurrency in `prereg bench verify`. An ack that is lost only means
	// a redelivery after AckWait (30 s), whose outcome is republished under
	// the same Nats-Msg-Id inside the stream's 2-minute duplicate window
	// and dropped, and whose token is answered from the cache.
	v.note(v.health, depAcks, j.msg.Ack())
	v.m.outcomes.WithLabelValues(string(out.Verdict), string(out.Reason)).Inc()
}

// retryCall puts back a message whose provider call failed. The failure
// is the message's only while the provider answers the others well: by
// the rolling window now, and since the message's previous failure.
func (v *Verifier) retryCall(ctx context.Context, j job, p *pool, cause string, err error) {
	if !p.healthyForOthers(v.set.Breaker) {
		v.retry(ctx, j, false, cause, err)
		return
	}
	v.count(ctx, j, p.othersFaredBetter, cause, err)
}

// retry puts a message back with a delay. When counted, the failure is
// held against the message, and the message ends as unprocessable once it
// has MaxAttempts of them.
func (v *Verifier) retry(ctx context.Context, j job, counted bool, cause string, err error) {
	attrs := []any{slog.Uint64("stream_seq", streamSeq(j.msg)), slog.String("cause", cause), slog.Any("err", err)}
	if !counted {
		v.log.Debug("verify: retry later", attrs...)
		v.nak(j.msg, cause)
		return
	}
	v.count(ctx, j, func(time.Time) bool { return true }, cause, err)
}

// count records a failure the message may be to blame for (as blame says,
// given the time of its previous failure), and ends the message as
// unprocessable once it has MaxAttempts counted failures.
func (v *Verifier) count(ctx context.Context, j job, blame func(prev time.Time) bool, cause string, err error) {
	attrs := []any{slog.Uint64("stream_seq", streamSeq(j.msg)), slog.String("cause", cause), slog.Any("err", err)}
	// The current key, pinned or not: a receipt's count must not depend
	// on whether its campaign was read yet. A rotation restarts counts.
	n, counted, cerr := countFailure(ctx, v.kv.attempts, v.cfg.Hasher.Sum("verify-attempt", j.in.Receipt), v.now(), blame)
	v.note(v.health, depAttempts, cerr)
	if cerr != nil {
		v.nak(j.msg, "infrastructure")
		return
	}
	if !counted {
		v.log.Debug("verify: retry later", attrs...)
		v.nak(j.msg, cause)
		return
	}
	v.m.counted.Inc()
	if n < v.set.MaxAttempts {
		v.log.Info("verify: message failed, retry later", append(attrs, slog.Int("failures", n))...)
		v.nak(j.msg, "message_failure")
		return
	}
	v.log.Warn("verify: message unprocessable", append(attrs, slog.Int("failures", n))...)
	v.giveUp(ctx, j)
}

// unreadable ends a message that is not an intent. Intake always sets
// Nats-Msg-Id to the receipt, so the header names the submission even
// when the body cannot be read.
func (v *Verifier) unreadable(ctx context.Context, msg jetstream.Msg, partial prereg.Intent, err error) {
	receipt := cmp.Or(msg.Headers().Get(jetstream.MsgIDHeader), partial.Receipt)
	if receipt == "" {
		// Not a 202'd intent (intake always names it): nothing to decide.
		v.terminate(ctx, msg, deadletter.ReasonNoReceipt, err)
		return
	}
	partial.Receipt = receipt
	v.log.Warn("verify: unreadable intent", slog.Uint64("stream_seq", streamSeq(msg)), slog.Any("err", err))
	j := job{msg: msg, in: partial}
	if partial.Campaign != "" {
		if c, cerr := v.camps.Get(ctx, partial.Campaign); cerr == nil {
			j.camp = c
			j.hasher, _ = v.cfg.Hasher.Pinned(c.HMACKey) // nil: the outcome goes without a token key
		}
	}
	v.giveUp(ctx, j)
}

// giveUp publishes Outcome{rejected, unprocessable} and acknowledges.
func (v *Verifier) giveUp(ctx context.Context, j job) {
	out := v.baseOutcome(j.in, "")
	if j.in.IdentityToken != "" && j.hasher != nil {
		out.TokenKey = j.hasher.Sum(keys.PurposeToken, j.in.IdentityToken)
	}
	out.Verdict, out.Reason = prereg.VerdictRejected, prereg.ReasonUnprocessable
	shards := 1
	if j.camp != nil {
		shards = j.camp.Shards
	}
	v.finish(ctx, j, out, prereg.Shard(out.Receipt, shards), "")
}

// phoneDigits reduces a Korean mobile number to its E.164 digits, so that
// "010-1234-5678" and "+821012345678" compare equal.
func phoneDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	d := b.String()
	if strings.HasPrefix(d, "0") {
		d = "82" + d[1:]
	}
	return d
}

func hitMiss(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}

// streamSeq names a message in logs without any of its content.
func streamSeq(msg jetstream.Msg) uint64 {
	if md, err := msg.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}
