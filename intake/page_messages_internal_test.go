package intake

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// Every word of the page exists in both languages, and every status,
// reason, citizen-facing error code and submit field has its message.
func TestPageMessagesComplete(t *testing.T) {
	t.Parallel()
	ko, en := messages["ko"], messages["en"]
	for k := range ko {
		require.Contains(t, en, k, "English lacks %s", k)
	}
	for k := range en {
		require.Contains(t, ko, k, "Korean lacks %s", k)
	}
	var want []string
	for _, s := range []prereg.Status{prereg.StatusReceived, prereg.StatusRegistered, prereg.StatusDuplicate, prereg.StatusHeld,
		prereg.StatusRejected, prereg.StatusUnassigned, prereg.StatusScheduled, prereg.StatusNotified, prereg.StatusDelivered, prereg.StatusCancelled} {
		want = append(want, "s_"+string(s))
	}
	for _, r := range []prereg.Reason{prereg.ReasonInvalidToken, prereg.ReasonBirthdateMismatch, prereg.ReasonNotInCohort,
		prereg.ReasonUnprocessable, prereg.ReasonOperatorRejected, prereg.ReasonTokenCampaign, prereg.ReasonTokenDevice, prereg.ReasonTokenExpired} {
		want = append(want, "r_"+string(r))
	}
	for _, c := range []string{httpapi.CodeInvalid, httpapi.CodeWindowClosed, httpapi.CodeNotFound, httpapi.CodeTooLarge,
		httpapi.CodeUnsupportedMedia, httpapi.CodeRateLimited, httpapi.CodeOverloaded, httpapi.CodeIdempotencyKeyReused, httpapi.CodeAlreadyAllocated, httpapi.CodePaused} {
		want = append(want, "e_"+c)
	}
	for _, f := range []string{"campaign", "provider", "identity_token", "birthdate", "phone", "region", "clinic", "earliest", "device_id", "Idempotency-Key", "body"} {
		want = append(want, "f_"+f)
	}
	for _, k := range want {
		require.NotEmpty(t, ko[k], "no message for %s", k)
	}
}
