package sim

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/stream"
	"github.com/prereg/prereg/stream/streamtest"
)

type campaignList []*campaign.Campaign

func (l campaignList) List(context.Context) ([]*campaign.Campaign, time.Time, error) {
	return l, time.Time{}, nil
}

// TestSurgeThroughIntake sends a surge through the real intake on a real
// JetStream: every answer must be the one the truth expects, every retry
// must get its original's receipt, and the submitted stream must hold
// exactly one message per distinct receipt. The load generator is trusted
// to forward each household's address. With intake's default per-device
// limit (a burst of 5, and no refill on the frozen clock) bots are cut
// off after 5 requests and nobody else is; without it bots get through
// to the device cap.
func TestSurgeThroughIntake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		deviceRate float64
		limited    bool
	}{
		{"default limits", 0, true},
		{"no device limit", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := sharedWorld(t, 7, 600)
			js := streamtest.New(t, stream.Config{})
			sealer, err := keys.NewSealer([]keys.Key{{ID: "e1", Secret: bytes.Repeat([]byte{9}, 32)}})
			require.NoError(t, err)
			svc, err := intake.New(intake.Config{
				JetStream:      js.JS,
				Conn:           js.NC,
				Campaigns:      campaignList{w.c},
				Hasher:         keys.NewHasher(keys.Key{ID: "h1", Secret: bytes.Repeat([]byte{7}, 32)}),
				Sealer:         sealer,
				Registry:       prometheus.NewRegistry(),
				Now:            func() time.Time { return testNow },
				DeviceRate:     tc.deviceRate,
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			})
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, svc.Start(ctx))
			srv := httptest.NewServer(svc.Handler())
			t.Cleanup(func() { srv.Close(); svc.Stop() })

			res, err := RunLoad(ctx, w.surge.Submissions, LoadConfig{Target: srv.URL, Connections: 8})
			require.NoError(t, err)
			sc := w.surge.Truth().Score(res.Answers, nil)
			require.Equal(t, sc.Expected.Status, res.ByStatus, "every answer as the truth expects")
			require.Equal(t, tc.limited, sc.BotsLimited > 0, "bots limited: %d", sc.BotsLimited)
			require.Equal(t, sc.Expected.Accepted, sc.Accepted)
			for _, m := range sc.Mismatches {
				require.Equal(t, "accepted but never decided", m.Problem, "submission %d (%s)", m.Seq, m.Class)
			}
			info, err := js.JS.Stream(ctx, stream.Submitted)
			require.NoError(t, err)
			require.Equal(t, uint64(sc.Expected.Accepted), info.CachedInfo().State.Msgs, "one message per distinct receipt")
		})
	}
}
