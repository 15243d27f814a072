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
// exactly one message per distinct receipt. The per-device limit is off
// (bots and busy family devices would otherwise get 429s, whose timing no
// truth can foresee); the per-address limit stays on, with the load
// generator trusted to forward each household's address.
func TestSurgeThroughIntake(t *testing.T) {
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
		DeviceRate:     -1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, svc.Start(ctx))
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { srv.Close(); svc.Stop() })

	res, err := RunLoad(ctx, w.surge.Submissions, LoadConfig{Target: srv.URL, Connections: 8})
	require.NoError(t, err)
	truth := w.surge.Truth()
	exp := truth.Expected()
	require.Equal(t, exp.Status, res.ByStatus, "every answer as the truth expects")
	sc := truth.Score(res.Answers, nil)
	require.Equal(t, exp.Accepted, sc.Accepted)
	for _, m := range sc.Mismatches {
		require.Equal(t, "accepted but never decided", m.Problem, "submission %d (%s)", m.Seq, m.Class)
	}
	info, err := js.JS.Stream(ctx, stream.Submitted)
	require.NoError(t, err)
	require.Equal(t, uint64(exp.Accepted), info.CachedInfo().State.Msgs, "one message per distinct receipt")
}
