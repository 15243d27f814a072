package intake_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
)

func TestLimiterIsATokenBucket(t *testing.T) {
	t.Parallel()
	clk := newClock(time.Unix(1_600_000_000, 0))
	l := intake.NewLimiter(2, 3, 1024, clk.Now) // 2 per second, burst 3
	for i := range 3 {
		ok, _ := l.Allow("a")
		require.True(t, ok, "burst token %d", i)
	}
	ok, wait := l.Allow("a")
	require.False(t, ok, "the burst is spent")
	require.Equal(t, 500*time.Millisecond, wait, "a token comes back every 500ms")
	ok, _ = l.Allow("b")
	require.True(t, ok, "another key has its own bucket")
	clk.Set(clk.Now().Add(500 * time.Millisecond))
	ok, _ = l.Allow("a")
	require.True(t, ok)
	ok, _ = l.Allow("a")
	require.False(t, ok)
	clk.Set(clk.Now().Add(time.Hour))
	for range 3 {
		ok, _ = l.Allow("a")
		require.True(t, ok, "an idle bucket refills to its burst, not beyond")
	}
	ok, _ = l.Allow("a")
	require.False(t, ok)
}

// A key within its budget is never refused for other keys' spending,
// even with the table an eighth full of live buckets: 1,000 bots spend
// ten times their burst while 200 people spend exactly theirs. (The
// earlier two-cell sketch refused about 6 % of such people.)
func TestLimiterKeysDoNotShareBuckets(t *testing.T) {
	t.Parallel()
	clk := newClock(time.Unix(1_600_000_000, 0))
	const burst = 5
	l := intake.NewLimiter(0.1, burst, 1<<14, clk.Now)
	refused := 0
	for round := range 10 * burst {
		for b := range 1000 {
			l.Allow(fmt.Sprintf("bot-%d", b))
		}
		if round < burst {
			for p := range 200 {
				if ok, _ := l.Allow(fmt.Sprintf("person-%d", p)); !ok {
					refused++
				}
			}
		}
	}
	require.Zero(t, refused, "requests of people within their burst refused")
	for b := range 1000 {
		ok, _ := l.Allow(fmt.Sprintf("bot-%d", b))
		require.False(t, ok, "bot %d got a token beyond its burst", b)
	}
}

// Far beyond its design load (every cell live), the limiter still
// admits a key it has not seen, and stays within its memory.
func TestLimiterFullTableAdmitsNewKeys(t *testing.T) {
	t.Parallel()
	clk := newClock(time.Unix(1_600_000_000, 0))
	l := intake.NewLimiter(0.1, 2, 64, clk.Now)
	for i := range 10_000 {
		ok, _ := l.Allow(fmt.Sprintf("key-%d", i))
		require.True(t, ok, "a new key's first request")
	}
	require.Equal(t, 64*8, l.Bytes())
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	l := intake.NewLimiter(1, 5, 1<<12, nil)
	before := l.Bytes()
	for i := range 200_000 {
		l.Allow(fmt.Sprintf("device-%d", i))
	}
	require.Equal(t, before, l.Bytes(), "a million keys take the same table as one")
	require.Equal(t, 8<<12, l.Bytes())
	require.Nil(t, intake.NewLimiter(-1, 1, 1, nil), "a negative rate disables the limit")
	ok, _ := (*intake.Limiter)(nil).Allow("x")
	require.True(t, ok)
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name, peer, xff, want string
	}{
		{"direct", "198.51.100.7:5555", "", "198.51.100.7"},
		{"untrusted peer's header is ignored", "198.51.100.7:5555", "203.0.113.1", "198.51.100.7"},
		{"trusted proxy", "10.1.2.3:5555", "203.0.113.1", "203.0.113.1"},
		{"forged left-most hop is skipped", "10.1.2.3:5555", "1.2.3.4, 203.0.113.1", "203.0.113.1"},
		{"chain of proxies", "10.1.2.3:5555", "203.0.113.1, 10.9.9.9", "203.0.113.1"},
		{"garbage stops at the last good hop", "10.1.2.3:5555", "nonsense", "10.1.2.3"},
		{"ipv6", "[2001:db8::1]:443", "", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodPost, "/", nil)
			require.NoError(t, err)
			r.RemoteAddr = tt.peer
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			require.Equal(t, tt.want, intake.ClientAddr(r, proxies).String())
		})
	}
}

func TestReceipts(t *testing.T) {
	t.Parallel()
	r := intake.Receipts{Hasher: keys.NewHasher(testHMAC)}
	random := r.Random()
	require.Len(t, random, intake.ReceiptLen)
	require.True(t, r.Valid(random))
	require.NotEqual(t, random, r.Random())

	idem := r.Idempotent("c", "device", "key")
	require.Equal(t, idem, intake.Receipts{Hasher: keys.NewHasher(testHMAC)}.Idempotent("c", "device", "key"), "any replica, same receipt")
	require.True(t, r.Valid(idem))
	require.NotEqual(t, idem, r.Idempotent("c", "device", "key2"))
	require.NotEqual(t, idem, r.Idempotent("c", "device2", "key"))

	other := intake.Receipts{Hasher: keys.NewHasher(keys.Key{ID: "x", Secret: bytes.Repeat([]byte{1}, 32)})}
	require.False(t, other.Valid(random), "a receipt made with another key is forged")
	for _, forged := range []string{"", "abc", random[:len(random)-1] + "A", random + "A", "!" + random[1:]} {
		if forged == random {
			continue
		}
		require.False(t, r.Valid(forged), "forged %q", forged)
	}
}
