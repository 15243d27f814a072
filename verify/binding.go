package verify

import (
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/keys"
)

// tokenBinding is what a token from a provider's sign-in page is bound
// to, as the provider's answer states it: the campaign it was issued
// for, the device it was issued to (as the device key intake puts on an
// intent, so the device id itself is never kept) and when it expires. It
// is remembered with the answer, so a cached token is held to it too.
type tokenBinding struct {
	Campaign  string    `json:"campaign"`
	DeviceKey string    `json:"device_key,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

// bindingOf is the binding a provider's answer states; nil for a token
// bound to no campaign (an app's token, pasted by an API client).
func bindingOf(h *keys.Hasher, a providerAnswer) *tokenBinding {
	if a.Campaign == "" {
		return nil
	}
	b := &tokenBinding{Campaign: a.Campaign, Expires: a.Expires}
	if a.Device != "" {
		b.DeviceKey = h.DeviceKey(a.Campaign, a.Device)
	}
	return b
}

// refuses says why a bound token does not go with the intent it came
// with, or ReasonNone: another campaign's token (token_campaign), a
// token issued to another device than the one that submitted
// (token_device: a token copied from someone's browser), or one that
// had expired when intake accepted the intent (token_expired). The
// intent's acceptance time, not verify's clock, is what counts: a
// backlog behind the log must not turn a good token bad.
func (b *tokenBinding) refuses(in prereg.Intent) prereg.Reason {
	switch {
	case b == nil:
		return prereg.ReasonNone
	case b.Campaign != in.Campaign:
		return prereg.ReasonTokenCampaign
	case b.DeviceKey != "" && b.DeviceKey != in.DeviceKey:
		return prereg.ReasonTokenDevice
	case !b.Expires.IsZero() && !in.ReceivedAt.Before(b.Expires):
		return prereg.ReasonTokenExpired
	}
	return prereg.ReasonNone
}
