package notify

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/korean"

	"github.com/prereg/prereg/campaign"
)

// Byte limits of Korean carriers, counted in EUC-KR (a Hangul syllable is
// two bytes, ASCII one).
const (
	SMSMaxBytes = 90
	LMSMaxBytes = 2000
)

// Type is the kind of message a carrier bills: a short SMS or a long LMS.
type Type string

// The message types.
const (
	TypeSMS Type = "sms"
	TypeLMS Type = "lms"
)

// ErrTooLong is a text over the LMS limit: no carrier takes it.
var ErrTooLong = errors.New("notify: text longer than an LMS")

// Text is a rendered message and how the carrier will count it.
type Text struct {
	Body  string
	Type  Type
	Bytes int // in EUC-KR
}

// EUCKRLen is the length of s in EUC-KR. A rune EUC-KR cannot encode is
// counted as the one byte of the '?' the gateway would put in its place.
func EUCKRLen(s string) int {
	enc := encoding.ReplaceUnsupported(korean.EUCKR.NewEncoder())
	b, err := enc.String(s)
	if err != nil { // cannot happen with ReplaceUnsupported; count conservatively
		return 2 * len([]rune(s))
	}
	return len(b)
}

// Classify decides SMS or LMS for a body by its EUC-KR length.
func Classify(body string) (Text, error) {
	n := EUCKRLen(body)
	switch {
	case n <= SMSMaxBytes:
		return Text{Body: body, Type: TypeSMS, Bytes: n}, nil
	case n <= LMSMaxBytes:
		return Text{Body: body, Type: TypeLMS, Bytes: n}, nil
	default:
		return Text{}, fmt.Errorf("%w: %d bytes", ErrTooLong, n)
	}
}

// Appointment is what the text says: where and when. Nothing about the
// person is in it.
type Appointment struct {
	Clinic string // the clinic's name
	Day    time.Time
	Band   int // index into the campaign's schedule bands
}

var (
	koWeekdays = [...]string{"일", "월", "화", "수", "목", "금", "토"}
	enWeekdays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
)

// Render writes the appointment's text in the campaign's language: clinic,
// date, time band and the status page link, nothing else. It fails when
// the band is not the campaign's or the text would not fit an LMS.
func Render(c *campaign.Campaign, a Appointment) (Text, error) {
	if a.Band < 0 || a.Band >= len(c.Schedule.Bands) {
		return Text{}, fmt.Errorf("notify: render: band %d not in campaign %s", a.Band, c.ID)
	}
	band := c.Schedule.Bands[a.Band].Label()
	link := strings.TrimSpace(c.Notify.StatusURL)
	var b strings.Builder
	switch c.Notify.Language {
	case "en":
		fmt.Fprintf(&b, "[Vaccination] Booked: %s, %s %d %s, %s.", a.Clinic,
			enWeekdays[a.Day.Weekday()], a.Day.Day(), a.Day.Month().String()[:3], band)
		if link != "" {
			b.WriteString(" Status: " + link)
		}
	default:
		fmt.Fprintf(&b, "[예방접종] %d/%d(%s) %s %s 예약", int(a.Day.Month()), a.Day.Day(),
			koWeekdays[a.Day.Weekday()], band, a.Clinic)
		if link != "" {
			b.WriteString(" 조회 " + link)
		}
	}
	return Classify(b.String())
}

// RenderCancellation writes the confirmation of a cancellation in the
// campaign's language: what was cancelled and the status page link,
// nothing about the person.
func RenderCancellation(c *campaign.Campaign) (Text, error) {
	link := strings.TrimSpace(c.Notify.StatusURL)
	var b strings.Builder
	switch c.Notify.Language {
	case "en":
		b.WriteString("[Vaccination] Your pre-registration is cancelled.")
		if link != "" {
			b.WriteString(" Status: " + link)
		}
	default:
		b.WriteString("[예방접종] 사전예약이 취소되었습니다.")
		if link != "" {
			b.WriteString(" 조회 " + link)
		}
	}
	return Classify(b.String())
}

// renderMessage is the text of a claimed message: an appointment's or a
// cancellation's.
func renderMessage(c *campaign.Campaign, m Message) (Text, error) {
	if m.Cancellation {
		return RenderCancellation(c)
	}
	return Render(c, m.Where)
}
