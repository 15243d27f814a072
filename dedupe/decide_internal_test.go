package dedupe

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// want is an item's decision as TestDecideInOrder checks it; an empty kind
// means the item waits.
type want struct {
	kind   prereg.Kind
	reason prereg.Reason
}

// testItem is an outcome of person (an identity key) from device, its
// (device, person) count at index pair (-1: no device).
func testItem(c *campaign.Campaign, receipt string, verdict prereg.Verdict, person, device string, pair int) *item {
	return &item{
		o: prereg.Outcome{
			Receipt: receipt, Campaign: c.ID, Window: "w1", Verdict: verdict,
			IdentityKey: person, DeviceKey: device, Birthdate: "1990-08-19",
		},
		camp: c,
		pair: pair,
	}
}

func TestDecideInOrder(t *testing.T) {
	t.Parallel()
	c := &campaign.Campaign{ID: "c1", Shards: 4, DeviceCap: 2}
	registered := &Person{
		Registration: &Registration{ID: 7, Campaign: c.ID, IdentityKey: "p1", FirstReceipt: "r0", DeviceKey: "d1"},
		// d3 was first paired by a submission of the batch under test:
		// not a device the person used before it.
		Devices: map[string]string{"d1": "r0", "d2": "r-old", "d3": "r2"},
	}
	claimOnly := func(last bool) *item {
		it := testItem(c, "r1", prereg.VerdictDuplicate, "p1", "d1", 0)
		it.last = last
		return it
	}
	for _, tc := range []struct {
		name   string
		people map[PersonKey]*Person
		counts []DeviceCount
		items  []*item
		want   []want
	}{
		{
			name:   "the first verified submission registers, a second from its device is a duplicate",
			counts: []DeviceCount{{Rank: 1, People: 1}, {Rank: 1, People: 1}},
			items: []*item{
				testItem(c, "r1", prereg.VerdictVerified, "p1", "d1", 0),
				testItem(c, "r2", prereg.VerdictVerified, "p1", "d1", 1),
			},
			want: []want{{prereg.KindRegistered, prereg.ReasonNone}, {prereg.KindDuplicate, prereg.ReasonSameDevice}},
		},
		{
			name:   "a registered person from a device used before, another, a proxy",
			people: map[PersonKey]*Person{{c.ID, "p1"}: registered},
			counts: []DeviceCount{{Rank: 1, People: 1}, {Rank: 1, People: 1}, {Rank: 1, People: 2}},
			items: []*item{
				testItem(c, "r1", prereg.VerdictVerified, "p1", "d2", 0),
				testItem(c, "r2", prereg.VerdictVerified, "p1", "d3", 1),
				testItem(c, "r3", prereg.VerdictVerified, "p1", "d4", 2),
			},
			want: []want{
				{prereg.KindDuplicate, prereg.ReasonSameDevice},
				{prereg.KindDuplicate, prereg.ReasonOtherDevice},
				{prereg.KindDuplicate, prereg.ReasonProxy},
			},
		},
		{
			name:   "a device over the cap is held, the person stays unregistered",
			counts: []DeviceCount{{Rank: 3, People: 3}, {Rank: 1, People: 1}},
			items: []*item{
				testItem(c, "r1", prereg.VerdictVerified, "p1", "bot", 0),
				testItem(c, "r2", prereg.VerdictVerified, "p1", "d1", 1),
			},
			want: []want{{prereg.KindHeld, prereg.ReasonDeviceLimit}, {prereg.KindRegistered, prereg.ReasonNone}},
		},
		{
			name:   "a claim seen of a registered person is a duplicate",
			people: map[PersonKey]*Person{{c.ID, "p1"}: registered},
			counts: []DeviceCount{{Rank: 1, People: 1}},
			items:  []*item{claimOnly(false)},
			want:   []want{{prereg.KindDuplicate, prereg.ReasonClaimSeen}},
		},
		{
			name:   "a claim seen of nobody registered waits",
			counts: []DeviceCount{{Rank: 1, People: 1}},
			items:  []*item{claimOnly(false)},
			want:   []want{{}},
		},
		{
			name:   "a claim seen of nobody registered is held on its last delivery",
			counts: []DeviceCount{{Rank: 1, People: 1}},
			items:  []*item{claimOnly(true)},
			want:   []want{{prereg.KindHeld, prereg.ReasonClaimSeen}},
		},
		{
			name: "an outcome without a person is rejected, for the verifier's reason if any",
			items: []*item{
				testItem(c, "r1", prereg.VerdictRejected, "", "d1", -1),
				func() *item {
					it := testItem(c, "r2", prereg.VerdictRejected, "", "d1", -1)
					it.o.Reason = prereg.ReasonInvalidToken
					return it
				}(),
				testItem(c, "r3", prereg.VerdictVerified, "", "d1", -1),
			},
			want: []want{
				{prereg.KindRejected, prereg.ReasonUnprocessable},
				{prereg.KindRejected, prereg.ReasonInvalidToken},
				{prereg.KindRejected, prereg.ReasonUnprocessable},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := &Worker{cfg: Config{Now: time.Now}, log: slog.New(slog.DiscardHandler)}
			b := w.newBatchTx(tc.items, tc.counts)
			if tc.people != nil {
				b.people = tc.people
			}
			b.decideInOrder()
			for i, it := range tc.items {
				if tc.want[i].kind == "" {
					require.Nil(t, it.dec, "item %d: want it to wait", i)
					require.True(t, it.wait, "item %d: want it to wait", i)
					continue
				}
				require.NotNil(t, it.dec, "item %d: want a decision", i)
				require.Equal(t, tc.want[i], want{it.dec.Kind, it.dec.Reason}, "item %d", i)
			}
		})
	}
}

func TestAddPriorDevices(t *testing.T) {
	t.Parallel()
	p := &Person{Devices: map[string]string{"d1": "r-old", "d2": "r-batch"}}
	devices := map[string]bool{"d0": true}
	addPriorDevices(devices, p, map[string]bool{"r-batch": true})
	require.Equal(t, map[string]bool{"d0": true, "d1": true}, devices,
		"want the devices paired before the batch added, not one first paired by it")
}

// peopleTx answers People from a map; a batch's lookup needs nothing else
// of the transaction.
type peopleTx struct {
	Tx
	people map[PersonKey]*Person
}

func (tx peopleTx) People(_ context.Context, keys []PersonKey) (map[PersonKey]*Person, error) {
	out := map[PersonKey]*Person{}
	for _, k := range keys {
		if p := tx.people[k]; p != nil {
			out[k] = p
		}
	}
	return out, nil
}

// TestCountBloom: the filters' answers are counted once per verified
// person, at the person's first verified item, even when a claim seen of
// the person came first and asked the filters; a false positive is among
// the maybe-seen of its shard.
func TestCountBloom(t *testing.T) {
	t.Parallel()
	c := &campaign.Campaign{ID: "c1", Shards: 4, DeviceCap: 2}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	// Filters not built yet answer "maybe" for everyone.
	w := &Worker{cfg: Config{Now: time.Now}, filters: NewFilters(0.001), metrics: m}
	registered := &Person{Registration: &Registration{ID: 7, Campaign: c.ID, IdentityKey: "p2", FirstReceipt: "r0", DeviceKey: "d2"}}
	withShard := func(it *item, shard int) *item { it.shard = shard; return it }
	items := []*item{
		withShard(testItem(c, "r1", prereg.VerdictDuplicate, "p1", "d1", -1), 1), // asks the filters for p1 first
		withShard(testItem(c, "r2", prereg.VerdictVerified, "p1", "d1", -1), 1),  // not registered: a false positive
		withShard(testItem(c, "r3", prereg.VerdictVerified, "p1", "d1", -1), 1),  // counted once per batch
		withShard(testItem(c, "r4", prereg.VerdictVerified, "p2", "d2", -1), 2),  // registered: a true positive
		withShard(testItem(c, "r5", prereg.VerdictDuplicate, "p3", "d3", -1), 3), // no verified item: not counted
	}
	b := w.newBatchTx(items, nil)
	require.NoError(t, b.lookUpPeople(context.Background(), peopleTx{people: map[PersonKey]*Person{{c.ID, "p2"}: registered}}))
	b.countBloom()
	got := map[bloomKey]BloomCount{}
	for k, bc := range b.bloom {
		got[k] = *bc
	}
	require.Equal(t, map[bloomKey]BloomCount{
		{c.ID, 1}: {Campaign: c.ID, Shard: 1, MaybeSeen: 1, FalsePositives: 1},
		{c.ID, 2}: {Campaign: c.ID, Shard: 2, MaybeSeen: 1},
	}, got)
	families, err := reg.Gather()
	require.NoError(t, err)
	var fps float64
	for _, mf := range families {
		if mf.GetName() == "prereg_dedupe_bloom_false_positives_total" {
			fps = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	require.Equal(t, 1.0, fps, "the false positives counter")
}
