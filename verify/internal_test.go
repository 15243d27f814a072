package verify

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/stream"
)

func TestBackoffIsCappedFullJitter(t *testing.T) {
	t.Parallel()
	v := &Verifier{set: Settings{BackoffBase: 100 * time.Millisecond, BackoffCap: 2 * time.Second}}
	cases := []struct {
		name       string
		deliveries uint64
		ceil       time.Duration
	}{
		{"first", 0, 100 * time.Millisecond},
		{"third", 2, 400 * time.Millisecond},
		{"capped", 10, 2 * time.Second},
		{"no overflow", 1 << 40, 2 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var lo, hi time.Duration = c.ceil, 0
			for range 2000 {
				d := v.backoff(c.deliveries)
				require.Positive(t, d)
				require.LessOrEqual(t, d, c.ceil)
				lo, hi = min(lo, d), max(hi, d)
			}
			// Full jitter: spread over the whole range, not bunched at the top.
			require.Less(t, lo, c.ceil/10)
			require.Greater(t, hi, c.ceil*9/10)
		})
	}
}

func TestPhoneDigits(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"010-1234-5678":    "821012345678",
		"+821012345678":    "821012345678",
		"+82 10 1234 5678": "821012345678",
		"01012345678":      "821012345678",
	} {
		require.Equal(t, want, phoneDigits(in), in)
	}
}

func TestDecodeIntent(t *testing.T) {
	t.Parallel()
	good := prereg.Intent{Receipt: "r1", Campaign: "c", Provider: "pass", IdentityToken: "t", Birthdate: "1990-08-19"}
	data, _ := json.Marshal(good)
	cases := []struct {
		name    string
		data    string
		ok      bool
		receipt string
	}{
		{"an intent", string(data), true, "r1"},
		{"not JSON", "{nope", false, ""},
		{"wrong types keep what can be read", `{"receipt":"r2","campaign":"c","birthdate":19900819}`, false, "r2"},
		{"no token", `{"receipt":"r3","campaign":"c","provider":"p","birthdate":"1990-08-19"}`, false, "r3"},
		{"bad date", `{"receipt":"r4","campaign":"c","provider":"p","identity_token":"t","birthdate":"19.8.1990"}`, false, "r4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := decodeIntent([]byte(c.data))
			require.Equal(t, c.ok, err == nil, "err: %v", err)
			require.Equal(t, c.receipt, in.Receipt)
		})
	}
}

// FuzzDecodeIntent: whatever lands on the submitted subjects, decoding
// neither panics nor accepts an intent without what verify needs.
func FuzzDecodeIntent(f *testing.F) {
	f.Add([]byte(`{"receipt":"r","campaign":"c","provider":"p","identity_token":"t","birthdate":"1990-08-19"}`))
	f.Add([]byte(`{"receipt":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := decodeIntent(data)
		if err != nil {
			return
		}
		if in.Receipt == "" || in.Campaign == "" || in.Provider == "" || in.IdentityToken == "" {
			t.Fatalf("accepted an incomplete intent")
		}
		if _, err := time.Parse(prereg.DateLayout, in.Birthdate); err != nil {
			t.Fatalf("accepted birth date %q", in.Birthdate)
		}
	})
}

func TestCallWindow(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	w := newCallWindow(10*time.Second, 10, func() time.Time { return now })
	for range 3 {
		w.add(answerOK)
	}
	w.add(answerFailed)
	w.add(answerRefused)
	ok, failed, refused := w.counts()
	require.Equal(t, [3]int{3, 1, 1}, [3]int{ok, failed, refused})
	now = now.Add(5 * time.Second)
	w.add(answerFailed)
	ok, failed, refused = w.counts()
	require.Equal(t, [3]int{3, 2, 1}, [3]int{ok, failed, refused})
	now = now.Add(6 * time.Second) // the first second has left the window
	ok, failed, refused = w.counts()
	require.Equal(t, [3]int{0, 1, 0}, [3]int{ok, failed, refused})
}

func TestTokenSetCountsEachTokenOncePerWindow(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	s := newTokenSet(10*time.Second, func() time.Time { return now })
	require.True(t, s.add("a"))
	require.False(t, s.add("a"), "the same token again")
	require.True(t, s.add("b"))
	now = now.Add(11 * time.Second)
	require.False(t, s.add("a"), "still remembered one span later")
	now = now.Add(11 * time.Second)
	require.True(t, s.add("a"), "forgotten after two spans")
}

// TestAckWaitInsideVerifiedDuplicateWindow: an outcome republished after a
// lost ack (a redelivery after AckWait) must land inside the verified
// stream's duplicate window, or it is stored twice.
func TestAckWaitInsideVerifiedDuplicateWindow(t *testing.T) {
	t.Parallel()
	window := stream.VerifiedConfig(stream.Config{}).Duplicates
	ackWait := Settings{}.withDefaults().AckWait
	require.Greater(t, window, 2*ackWait, "the verified stream's duplicate window should outlast a redelivery with margin")
}
