package notify_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/notify"
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
