package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
	"github.com/prereg/prereg/verify"
)

func TestMain(m *testing.M) { pgtest.VerifyMain(m) }

const campaignID = "test-2021"

// ciSecret is shared by every simulated provider: the same person has the
// same CI (and so the same identity key) whichever provider verified them.
var ciSecret = []byte("national-ci-secret")

// provider is a simulated identity provider on loopback, with a count of
// the requests in flight at it.
type provider struct {
	*sim.IdP
	srv         *httptest.Server
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	// refuse holds tokens the provider answers 403 (a refusal of that
	// request alone) while it answers everyone else.
	refuse sync.Map
}

func newProvider(tb testing.TB, name string) *provider {
	tb.Helper()
	p := &provider{IdP: sim.NewIdP(name, []byte("secret-"+name), ciSecret)}
	h := p.Handler()
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/verify" {
			body, _ := io.ReadAll(r.Body)
			var req struct{ Token string }
			_ = json.Unmarshal(body, &req)
			if _, ok := p.refuse.Load(req.Token); ok {
				http.Error(w, `{"error":"forbidden"}`, http.StatusForbidden)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			n := p.inFlight.Add(1)
			defer p.inFlight.Add(-1)
			for {
				m := p.maxInFlight.Load()
				if n <= m || p.maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
		}
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *provider) setFaults(tb testing.TB, f sim.Faults) {
	tb.Helper()
	require.NoError(tb, p.SetFaults(f))
}

// world is one test's JetStream, keys, campaign and providers.
type world struct {
	tb     testing.TB
	js     *streamtest.Server
	hasher *keys.Hasher
	sealer *keys.Sealer
	camp   *campaign.Campaign
	provs  map[string]*provider
	seq    atomic.Int64
	regs   verify.Registrations // nil: claims are always verified
}

// campaigns serves the test's campaign (verify reads campaigns through
// this interface; PostgreSQL holds them in production).
type campaigns map[string]*campaign.Campaign

func (c campaigns) Get(_ context.Context, id string) (*campaign.Campaign, error) {
	if x, ok := c[id]; ok {
		return x, nil
	}
	return nil, prereg.ErrCampaignNotFound
}

type providerSpec struct {
	name        string
	concurrency int
	timeout     time.Duration
	rate        float64
}

func newWorld(tb testing.TB, specs ...providerSpec) *world {
	tb.Helper()
	if len(specs) == 0 {
		specs = []providerSpec{{name: "pass"}}
	}
	sealer, err := keys.NewSealer([]keys.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}})
	require.NoError(tb, err)
	w := &world{
		tb:     tb,
		js:     streamtest.New(tb, stream.Config{}),
		hasher: keys.NewHasher(keys.Key{ID: "h1", Secret: []byte("hmac-secret-for-tests-0123456789")}),
		sealer: sealer,
		provs:  map[string]*provider{},
		camp: &campaign.Campaign{
			ID:     campaignID,
			Shards: 4,
			Cohort: campaign.Cohort{BornFrom: date("1972-01-01"), BornTo: date("2003-12-31")},
		},
	}
	for _, s := range specs {
		p := newProvider(tb, s.name)
		w.provs[s.name] = p
		w.camp.Providers = append(w.camp.Providers, campaign.Provider{
			Name: s.name, URL: p.srv.URL, Timeout: cmpDur(s.timeout, 2*time.Second),
			Concurrency: max(s.concurrency, 4), Rate: s.rate, Burst: max(s.concurrency, 4),
		})
	}
	return w
}

func cmpDur(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

func date(s string) time.Time {
	t, err := time.Parse(prereg.DateLayout, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fastSettings keep breakers and backoffs short so tests run in seconds.
func fastSettings() verify.Settings {
	return verify.Settings{
		Batch:       32,
		AckWait:     5 * time.Second,
		MaxAttempts: 3,
		BackoffBase: 10 * time.Millisecond,
		BackoffCap:  150 * time.Millisecond,
		Breaker: verify.BreakerSettings{
			MinRequests: 10, FailureRatio: 0.5, Window: 2 * time.Second, Buckets: 4,
			OpenFor: 200 * time.Millisecond, HalfOpenRequests: 2,
		},
		HealthEvery: 50 * time.Millisecond,
		ClaimWaits:  2,
		ClaimWait:   50 * time.Millisecond,
		StopTimeout: 5 * time.Second,
	}
}

// start runs a Verifier on its own NATS connection until the test ends.
func (w *world) start(set verify.Settings) (*verify.Verifier, *nats.Conn) {
	w.tb.Helper()
	nc, err := nats.Connect(w.js.ClientURL())
	require.NoError(w.tb, err)
	js, err := jetstream.New(nc)
	require.NoError(w.tb, err)
	v, err := verify.New(verify.Config{
		JetStream: js, Campaigns: campaigns{campaignID: w.camp},
		Hasher: w.hasher, Sealer: w.sealer, Registrations: w.regs, Settings: set,
	})
	require.NoError(w.tb, err)
	require.NoError(w.tb, v.Start(context.Background()))
	w.tb.Cleanup(func() { v.Stop(); nc.Close() })
	return v, nc
}

// person is someone in the simulated population.
type person struct {
	id, birthdate, phone string
}

func (w *world) person(i int) person {
	return person{id: fmt.Sprintf("person-%d", i), birthdate: fmt.Sprintf("19%02d-08-%02d", 80+i%20, 1+i%28), phone: fmt.Sprintf("+82101234%04d", i%10000)}
}

// token makes a token for p at a provider, from a device, as its app would.
func (w *world) token(prov string, p person, nonce int) string {
	return w.provs[prov].Issue(sim.TokenClaims{Person: p.id, Birthdate: p.birthdate, Phone: p.phone, Device: "dev", Nonce: nonce})
}

// intent is what intake would publish for p with a token; claimed birth
// date and phone as typed.
func (w *world) intent(prov, token, birthdate, phone string) prereg.Intent {
	n := w.seq.Add(1)
	return prereg.Intent{
		Receipt:       fmt.Sprintf("r%06d", n),
		Campaign:      campaignID,
		Window:        "w1",
		Provider:      prov,
		IdentityToken: token,
		Birthdate:     birthdate,
		Phone:         w.sealer.Seal([]byte(phone), []byte(campaignID)),
		Region:        "11680",
		DeviceKey:     w.hasher.Sum(keys.PurposeDevice, campaignID, fmt.Sprint("device-", n)),
		ReceivedAt:    time.Now().UTC(),
	}
}

// submit publishes intents as intake does: Nats-Msg-Id = receipt.
func (w *world) submit(ins ...prereg.Intent) {
	w.tb.Helper()
	var acks []jetstream.PubAckFuture
	for _, in := range ins {
		data, err := json.Marshal(in)
		require.NoError(w.tb, err)
		f, err := w.js.JS.PublishAsync(stream.SubmittedSubject(prereg.Shard(in.Receipt, 4)), data, jetstream.WithMsgID(in.Receipt))
		require.NoError(w.tb, err)
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			w.tb.Fatalf("submit: %v", err)
		case <-time.After(10 * time.Second):
			w.tb.Fatal("submit: no ack within 10s")
		}
	}
}

// outcomeMsg is an outcome with the subject it came on.
type outcomeMsg struct {
	prereg.Outcome
	subject string
}

// outcomes waits until the verified stream holds want outcomes (or the
// timeout passes) and returns them by receipt, failing on any receipt
// published twice.
func (w *world) outcomes(want int, timeout time.Duration) map[string]outcomeMsg {
	w.tb.Helper()
	require.EventuallyWithT(w.tb, func(c *assert.CollectT) {
		info, err := w.js.JS.Stream(context.Background(), stream.Verified)
		require.NoError(c, err)
		require.GreaterOrEqual(c, int(info.CachedInfo().State.Msgs), want, "outcomes in the verified stream")
	}, timeout, 20*time.Millisecond, "want %d outcomes within %s", want, timeout)
	return w.readOutcomes()
}

// readOutcomes reads every outcome in the verified stream.
func (w *world) readOutcomes() map[string]outcomeMsg {
	w.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := w.js.JS.Stream(ctx, stream.Verified)
	require.NoError(w.tb, err)
	n := int(s.CachedInfo().State.Msgs)
	out := map[string]outcomeMsg{}
	if n == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(w.tb, err)
	for len(out) < n {
		batch, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(2*time.Second))
		require.NoError(w.tb, err)
		got := 0
		for m := range batch.Messages() {
			got++
			var o prereg.Outcome
			require.NoError(w.tb, json.Unmarshal(m.Data(), &o))
			_, dup := out[o.Receipt]
			require.False(w.tb, dup, "receipt %s published twice", o.Receipt)
			require.Equal(w.tb, o.Receipt, m.Headers().Get(jetstream.MsgIDHeader), "Nats-Msg-Id is the receipt")
			require.NotContains(w.tb, string(m.Data()), "identity_token", "no token downstream")
			out[o.Receipt] = outcomeMsg{Outcome: o, subject: m.Subject()}
		}
		require.NoError(w.tb, batch.Error())
		if got == 0 {
			w.tb.Fatalf("could read only %d of %d outcomes", len(out), n)
		}
	}
	return out
}

// health reads a provider's health from KV; the zero Health when absent.
func (w *world) health(prov string) prereg.ProviderHealth {
	w.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := w.js.JS.KeyValue(ctx, prereg.ProviderHealthBucket)
	if err != nil {
		return prereg.ProviderHealth{}
	}
	e, err := kv.Get(ctx, prereg.ProviderHealthKey(campaignID, prov))
	if err != nil {
		return prereg.ProviderHealth{}
	}
	var h prereg.ProviderHealth
	require.NoError(w.tb, json.Unmarshal(e.Value(), &h))
	return h
}

// submittedLeft is how many intents wait in the work-queue stream.
func (w *world) submittedLeft() int {
	w.tb.Helper()
	s, err := w.js.JS.Stream(context.Background(), stream.Submitted)
	require.NoError(w.tb, err)
	return int(s.CachedInfo().State.Msgs)
}

// surge makes n intents of n different people for provider "pass".
func (w *world) surge(n int) []prereg.Intent {
	ins := make([]prereg.Intent, n)
	for i := range ins {
		p := w.person(i)
		ins[i] = w.intent("pass", w.token("pass", p, 0), p.birthdate, p.phone)
	}
	return ins
}
