package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
)

// Receipts issued before a rotation stay valid while their key is
// configured; an idempotent receipt made with a campaign's pinned key is
// the one it was before.
func TestReceiptsAcrossARotation(t *testing.T) {
	t.Parallel()
	next := keys.Key{ID: "t2", Secret: bytes.Repeat([]byte{8}, 32)}
	before := intake.Receipts{Hasher: keys.NewHasher(testHMAC)}
	after := intake.Receipts{Hasher: keys.NewHasher(next, testHMAC)}
	retired := intake.Receipts{Hasher: keys.NewHasher(next)}

	old := before.Random()
	require.True(t, after.Valid(old), "a receipt from before the rotation, checked under every key")
	require.False(t, retired.Valid(old), "its key retired, it no longer checks")
	require.True(t, after.Valid(after.Random()))
	require.False(t, before.Valid(after.Random()), "the new key's receipts are not the old process's")

	pinned, err := after.Hasher.Pinned(testHMAC.ID)
	require.NoError(t, err)
	require.Equal(t, before.Idempotent("c", "device", "key"), intake.Receipts{Hasher: pinned}.Idempotent("c", "device", "key"))
}

// A campaign keeps the key it is pinned to when the current key changes:
// its device and address keys, and so its caps and limits, are the same
// before and after.
func TestSubmitHashesWithTheCampaignsKey(t *testing.T) {
	t.Parallel()
	next := keys.Key{ID: "t2", Secret: bytes.Repeat([]byte{8}, 32)}
	e := setup(t, func(cfg *intake.Config) {
		c := testCampaign(t)
		c.HMACKey = testHMAC.ID
		cfg.Campaigns = staticCampaigns{c}
		cfg.Hasher = keys.NewHasher(next, testHMAC)
	})
	a := e.post(t, body(nil), "X-Forwarded-For", "203.0.113.9")
	require.Equal(t, http.StatusAccepted, a.Status, "body: %v", a.Body)
	msgs := e.messages(t)
	require.Len(t, msgs, 1)
	var in prereg.Intent
	require.NoError(t, json.Unmarshal(msgs[0].Data, &in))
	old := keys.NewHasher(testHMAC)
	require.Equal(t, old.Sum(keys.PurposeDevice, "test-2021", "device-1"), in.DeviceKey)
	require.NotEmpty(t, in.AddrKey)
	require.NoError(t, e.svc.Ready(context.Background()))
}

// A campaign pinned to a key this process lacks is the operator's error:
// its submissions are shed (503, retry later), never refused as the
// citizen's fault, and intake is not ready until restarted with the key.
func TestSubmitToACampaignPinnedToAMissingKey(t *testing.T) {
	t.Parallel()
	e := setup(t, func(cfg *intake.Config) {
		c := testCampaign(t)
		c.HMACKey = "gone"
		cfg.Campaigns = staticCampaigns{c}
	})
	a := e.post(t, body(nil))
	require.Equal(t, http.StatusServiceUnavailable, a.Status, "body: %v", a.Body)
	require.NotEmpty(t, a.Header.Get("Retry-After"))
	require.Empty(t, e.messages(t), "nothing published")
	require.ErrorContains(t, e.svc.Ready(context.Background()), "gone")
}
