package intake

import (
	_ "embed"
	"strings"
	"time"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/region"
)

// Field limits. The body as a whole is bounded by MaxBody; these bound each
// field so that nothing downstream stores an unbounded string.
const (
	maxToken    = 2048
	maxDeviceID = 128
	maxClinic   = 64
	maxIdemKey  = 128
)

// Valid is a request that passed Validate, with its parsed and normalised
// values.
type Valid struct {
	Request
	Birth time.Time // the birth date at midnight UTC
	Phone string    // E.164, e.g. +821012345678
}

// Validate checks a decoded request against its campaign and returns the
// normalised request or the FieldErrors of every field that is wrong.
func Validate(req Request, c *campaign.Campaign) (Valid, error) {
	v := Valid{Request: req}
	errs := FieldErrors{}
	if _, ok := c.Provider(req.Provider); !ok {
		errs["provider"] = "not a provider of this campaign"
	}
	switch {
	case req.IdentityToken == "":
		errs["identity_token"] = "required"
	case len(req.IdentityToken) > maxToken || !printable(req.IdentityToken):
		errs["identity_token"] = "want at most 2048 printable ASCII characters"
	}
	if b, err := campaign.ParseDate(req.Birthdate); err != nil {
		errs["birthdate"] = "want a date as YYYY-MM-DD"
	} else if !c.Cohort.Contains(b) {
		errs["birthdate"] = "outside the campaign's cohort (" + c.Cohort.BornFrom.Format("2006-01-02") + " to " + c.Cohort.BornTo.Format("2006-01-02") + ")"
	} else {
		v.Birth = b
	}
	if p, ok := NormalizePhone(req.Phone); ok {
		v.Phone = p
	} else {
		errs["phone"] = "want a Korean mobile number, e.g. 010-1234-5678"
	}
	if !region.Known(req.Region) {
		errs["region"] = "want a 5-digit si/gun/gu code, e.g. 11680"
	}
	if len(req.Clinic) > maxClinic || !identifier(req.Clinic) {
		errs["clinic"] = "want a clinic id of at most 64 letters, digits, '.', '_' or '-'"
	}
	if req.Earliest != "" {
		if _, err := campaign.ParseDate(req.Earliest); err != nil {
			errs["earliest"] = "want a date as YYYY-MM-DD"
		}
	}
	switch {
	case req.DeviceID == "":
		errs["device_id"] = "required"
	case len(req.DeviceID) > maxDeviceID || !printable(req.DeviceID):
		errs["device_id"] = "want at most 128 printable ASCII characters"
	}
	if len(errs) > 0 {
		return Valid{}, errs
	}
	return v, nil
}

// NormalizePhone turns a Korean mobile number as people write it
// (010-1234-5678, 010 1234 5678, +82 10-1234-5678, 82-10-…) into E.164
// (+821012345678). Mobile prefixes are 010 (followed by 8 digits) and the
// legacy 011, 016, 017, 018, 019 (7 or 8 digits).
func NormalizePhone(s string) (string, bool) {
	if len(s) > 32 {
		return "", false
	}
	var d []byte
	plus := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			d = append(d, c)
		case c == '+' && i == 0:
			plus = true
		case c == '-' || c == ' ' || c == '.' || c == '(' || c == ')':
		default:
			return "", false
		}
	}
	n := string(d)
	switch {
	case strings.HasPrefix(n, "82"):
		n = strings.TrimPrefix(n[2:], "0") // +82 (0)10 …
		n = "0" + n
	case plus:
		return "", false // another country
	}
	if len(n) < 10 || len(n) > 11 || n[0] != '0' || n[1] != '1' {
		return "", false
	}
	switch n[2] {
	case '0':
		if len(n) != 11 {
			return "", false
		}
	case '1', '6', '7', '8', '9':
	default:
		return "", false
	}
	return "+82" + n[1:], true
}

// printable reports whether s is non-empty printable ASCII.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// identifier reports whether s is letters, digits, '.', '_' or '-' (or
// empty).
func identifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
