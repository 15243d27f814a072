package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
)

// The cancellation SMS is in the campaign's language, fits one SMS, links
// the status page and says nothing about the person.
func TestRenderCancellation(t *testing.T) {
	t.Parallel()
	for lang, want := range map[string]string{
		"ko": "[예방접종] 사전예약이 취소되었습니다. 조회 https://prereg.example.kr/",
		"en": "[Vaccination] Your pre-registration is cancelled. Status: https://prereg.example.kr/",
	} {
		got, err := notify.RenderCancellation(testCampaign(t, lang, "unused"))
		require.NoError(t, err, lang)
		require.Equal(t, want, got.Body, lang)
		require.Equal(t, notify.TypeSMS, got.Type, "%s: %d bytes in EUC-KR, want one SMS", lang, got.Bytes)
	}
}

// A cancelled registration's phone gets the cancellation, once, and never
// the appointment SMS that had not gone out; the others get theirs.
func TestCancellationSentOnceInsteadOfAppointment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, worldConfig{n: 3})
	_, err := w.db.Pool.Exec(ctx, `INSERT INTO decisions (campaign, receipt, shard, window_id, kind, provider, registration_id, device_key, birthdate, received_at)
		SELECT campaign, first_receipt, 0, 'w1', 'registered', 'pass', id, 'dev', birthdate, received_at FROM registrations WHERE first_receipt = 'r000000000'`)
	require.NoError(t, err)
	rq := &postgres.RequestStore{Pool: w.db.Pool}
	birth := time.Date(1990, 8, 19, 0, 0, 0, 0, time.UTC)
	require.NoError(t, rq.Cancel(ctx, "r000000000", birth))

	wk := w.worker(t, notify.Config{BatchSize: 4}, notify.GatewayConfig{})
	drain(t, wk, 30*time.Second)
	require.NoError(t, rq.Cancel(ctx, "r000000000", birth), "asked again")
	drain(t, wk, 30*time.Second)

	h := w.gw.Handsets()
	require.Equal(t, 1, h.Received(w.seeded.Phones[0]), "one message to the cancelled registration's phone")
	require.Contains(t, h.Last(w.seeded.Phones[0]), "취소", "the cancellation, in the campaign's language")
	require.Zero(t, h.ReceivedKey(w.seeded.Keys[0]), "the appointment SMS never went out")
	for i := 1; i < 3; i++ {
		require.Equal(t, 1, h.Received(w.seeded.Phones[i]), "appointment %d", i)
	}
	require.Zero(t, h.Duplicates())
}
