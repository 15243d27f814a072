package intake_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
)

func TestAddrPrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, addr string
		bits       int
		want       string
	}{
		{"IPv4 by address", "198.51.100.7", 64, "198.51.100.7"},
		{"IPv4-mapped by address", "::ffff:198.51.100.7", 64, "198.51.100.7"},
		{"IPv6 by /64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"},
		{"IPv6 by /56", "2001:db8:1:2ff:aaaa::1", 56, "2001:db8:1:200::/56"},
		{"IPv6 zone dropped", "fe80::1%eth0", 64, "fe80::/64"},
		{"out of range is the default", "2001:db8:1:2::1", 0, "2001:db8:1:2::/64"},
		{"whole IPv6 address", "2001:db8::1", 128, "2001:db8::1/128"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, intake.AddrKey(netip.MustParseAddr(tt.addr), tt.bits))
		})
	}
	require.Empty(t, intake.AddrKey(netip.Addr{}, 64), "no address, no key")
}

// TestAddressLimitsKeyIPv6ByPrefix: every address of one /64 shares the
// submission bucket, the lookup bucket and the published address hash;
// another /64 has its own.
func TestAddressLimitsKeyIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *intake.Config) {
		c.AddrRate, c.AddrBurst = 0.001, 1
		c.LookupRate, c.LookupBurst = 0.001, 1
		c.DeviceRate = -1
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	first := e.post(t, body(nil), "X-Forwarded-For", "2001:db8:1:2::1")
	require.Equal(t, http.StatusAccepted, first.Status, "body: %v", first.Body)
	a := e.post(t, body(nil), "X-Forwarded-For", "2001:db8:1:2:ffff:1234:5678:9abc")
	require.Equal(t, http.StatusTooManyRequests, a.Status, "another address of the same /64 shares its bucket")
	require.Equal(t, "address", a.Body["limit"])
	require.Equal(t, http.StatusAccepted, e.post(t, body(nil), "X-Forwarded-For", "2001:db8:1:3::1").Status, "another /64 has its own")

	require.Equal(t, http.StatusNotFound, e.get(t, "/v1/intents/forged?birthdate=1990-08-19", "X-Forwarded-For", "2001:db8:9:9::1").Status)
	l := e.get(t, "/v1/intents/forged?birthdate=1990-08-19", "X-Forwarded-For", "2001:db8:9:9::2")
	require.Equal(t, http.StatusTooManyRequests, l.Status, "the status lookup's limit keys on the /64 too")

	msgs := e.messages(t)
	require.Len(t, msgs, 2)
	var in [2]prereg.Intent
	for i, m := range msgs {
		require.NoError(t, json.Unmarshal(m.Data, &in[i]))
	}
	require.NotEqual(t, in[0].AddrKey, in[1].AddrKey, "two /64s, two address keys")

	// The published hash is the prefix's: a second address of the first
	// /64, allowed by a fresh intake, gets the first one's key.
	e2 := setupOn(t, e.js, func(c *intake.Config) {
		c.DeviceRate = -1
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	require.Equal(t, http.StatusAccepted, e2.post(t, body(nil), "X-Forwarded-For", "2001:db8:1:2::77").Status)
	msgs = e.messages(t)
	require.Len(t, msgs, 3)
	var third prereg.Intent
	require.NoError(t, json.Unmarshal(msgs[2].Data, &third))
	require.Equal(t, in[0].AddrKey, third.AddrKey, "one /64, one address key")
}
