package intake

import (
	"encoding/json"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/campaign"
)

// nextAnswer is "next" before allocation: the round the registration
// takes part in, when it is allocated and when its SMS are expected
// (campaign.SMSWindow), RFC 3339 in the campaign's time zone.
type nextAnswer struct {
	RoundAt  time.Time `json:"round_at"`
	SMSFrom  time.Time `json:"sms_from"`
	SMSUntil time.Time `json:"sms_until"`
}

// appointmentNext is "next" after allocation: the appointment's clinic
// and its band's start and end.
type appointmentNext struct {
	Clinic     string    `json:"clinic"`
	ClinicName string    `json:"clinic_name"`
	Address    string    `json:"address"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
}

func roundNext(c *campaign.Campaign, w campaign.Window) nextAnswer {
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	from, until := c.SMSWindow(w)
	return nextAnswer{RoundAt: w.AllocateAt.In(loc), SMSFrom: from.In(loc), SMSUntil: until.In(loc)}
}

// nextBodies encodes, by window id, the `,"next":{…}` the 202 of a
// submission in that window carries, once per catalog refresh: the 202
// appends it without encoding anything.
func nextBodies(c *campaign.Campaign) map[string][]byte {
	out := make(map[string][]byte, len(c.Windows))
	for _, w := range c.Windows {
		data, err := json.Marshal(roundNext(c, w))
		if err != nil {
			continue // times always encode
		}
		out[w.ID] = append([]byte(`,"next":`), data...)
	}
	return out
}

// lookupNext is the status lookup's "next": the round a registration
// still waits for (registered, unassigned), the appointment once there
// is one, nothing otherwise.
func lookupNext(e *entry, d *Decided, now time.Time) any {
	c := e.c
	switch d.Status {
	case prereg.StatusRegistered, prereg.StatusUnassigned:
		if w, ok := c.NextRound(d.Window, now); ok {
			n := roundNext(c, w)
			return &n
		}
	case prereg.StatusScheduled, prereg.StatusNotified, prereg.StatusDelivered:
		if d.Slot == nil {
			return nil
		}
		loc := c.Location
		if loc == nil {
			loc = time.UTC
		}
		a := &appointmentNext{Clinic: d.Slot.Clinic, ClinicName: d.Slot.Clinic}
		if cl, ok := e.clinics.clinic(d.Slot.Clinic); ok {
			a.ClinicName, a.Address = cl.Name, cl.Address
		}
		a.Start, a.End = c.Schedule.BandTimes(d.Slot.Day, d.Slot.Band, loc)
		if a.Start.IsZero() {
			return nil
		}
		return a
	}
	return nil
}
