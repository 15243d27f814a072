package dedupe

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// phonesTx answers Phones and People from maps and records what it was
// asked.
type phonesTx struct {
	peopleTx
	phones map[PhoneKey]map[string]bool
	asked  []PhoneKey
	looked []PersonKey
}

func (tx *phonesTx) People(ctx context.Context, keys []PersonKey) (map[PersonKey]*Person, error) {
	tx.looked = append(tx.looked, keys...)
	return tx.peopleTx.People(ctx, keys)
}

func (tx *phonesTx) Phones(_ context.Context, keys []PhoneKey) (map[PhoneKey]map[string]bool, error) {
	tx.asked = append(tx.asked, keys...)
	out := map[PhoneKey]map[string]bool{}
	for _, k := range keys {
		if p := tx.phones[k]; p != nil {
			out[k] = p
		}
	}
	return out, nil
}

func TestDecidePhoneCap(t *testing.T) {
	t.Parallel()
	c := &campaign.Campaign{ID: "c1", Shards: 4, DeviceCap: 2, Limits: campaign.Limits{PhoneCap: 2}}
	withPhone := func(it *item, phone string) *item { it.o.PhoneKey = phone; return it }
	registered := &Person{Registration: &Registration{ID: 7, Campaign: c.ID, IdentityKey: "p9", FirstReceipt: "r0", DeviceKey: "d9"}}
	items := []*item{
		withPhone(testItem(c, "r1", prereg.VerdictVerified, "p1", "d1", 0), "full"),  // full: held
		withPhone(testItem(c, "r2", prereg.VerdictVerified, "p2", "d2", 1), "full"),  // holds a slot already (a replay): registers
		withPhone(testItem(c, "r3", prereg.VerdictVerified, "p3", "d3", 2), "room"),  // takes the last slot
		withPhone(testItem(c, "r4", prereg.VerdictVerified, "p4", "d4", 3), "room"),  // then full: held
		withPhone(testItem(c, "r5", prereg.VerdictVerified, "p3", "d5", 4), "other"), // p3 again: a duplicate, no slot
		withPhone(testItem(c, "r6", prereg.VerdictVerified, "p6", "bot", 5), "new"),  // over the device cap: device_limit first
		withPhone(testItem(c, "r7", prereg.VerdictVerified, "p9", "d9", 6), "full"),  // registered: a duplicate, phone not locked
		testItem(c, "r8", prereg.VerdictVerified, "p8", "d8", 7),                     // no phone key: no cap
		withPhone(testItem(c, "r9", prereg.VerdictVerified, "p7", "d7", 8), "full"),  // registered meanwhile (a stale filter): a duplicate, not held
	}
	counts := []DeviceCount{{1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {3, 3}, {1, 1}, {1, 1}, {1, 1}}
	w := &Worker{cfg: Config{Now: time.Now}, log: slog.New(slog.DiscardHandler), filters: NewFilters(0.001)}
	b := w.newBatchTx(items, counts)
	stale := &Person{Registration: &Registration{ID: 8, Campaign: c.ID, IdentityKey: "p7", FirstReceipt: "r-released", DeviceKey: "d7"}}
	tx := &phonesTx{
		peopleTx: peopleTx{people: map[PersonKey]*Person{{c.ID, "p7"}: stale}},
		phones: map[PhoneKey]map[string]bool{
			{c.ID, "full"}: {"a": true, "p2": true},
			{c.ID, "room"}: {"a": true},
		},
	}
	require.NoError(t, b.lookUpPeople(context.Background(), peopleTx{people: map[PersonKey]*Person{{c.ID, "p9"}: registered}}))
	require.NoError(t, b.lockPhones(context.Background(), tx))
	require.ElementsMatch(t, []PhoneKey{{c.ID, "full"}, {c.ID, "room"}, {c.ID, "other"}}, tx.asked,
		"the phones of verified, unregistered people under the device cap are locked, each once")
	b.decideInOrder()
	got := make([]want, len(items))
	for i, it := range items {
		got[i] = want{it.dec.Kind, it.dec.Reason}
	}
	require.Equal(t, []want{
		{prereg.KindHeld, prereg.ReasonPhoneCap},
		{prereg.KindRegistered, ""},
		{prereg.KindRegistered, ""},
		{prereg.KindHeld, prereg.ReasonPhoneCap},
		{prereg.KindDuplicate, prereg.ReasonOtherDevice},
		{prereg.KindHeld, prereg.ReasonDeviceLimit},
		{prereg.KindDuplicate, prereg.ReasonSameDevice},
		{prereg.KindRegistered, ""},
		{prereg.KindDuplicate, prereg.ReasonSameDevice},
	}, got)
	require.ElementsMatch(t, []PersonKey{{c.ID, "p1"}, {c.ID, "p7"}}, tx.looked,
		"the people a full phone would hold are looked up, in case a stale filter missed their registration")
	require.Equal(t, "full", items[0].dec.PhoneKey, "a held decision keeps its phone's key for a release")
	require.Empty(t, items[1].dec.PhoneKey, "only held decisions keep it")
	var slots []PhoneSlot
	for _, r := range b.pending {
		if r.slot != nil {
			slots = append(slots, *r.slot)
		}
	}
	require.Equal(t, []PhoneSlot{
		{Campaign: c.ID, PhoneKey: "full", IdentityKey: "p2", Receipt: "r2"},
		{Campaign: c.ID, PhoneKey: "room", IdentityKey: "p3", Receipt: "r3"},
	}, slots)
}
