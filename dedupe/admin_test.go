package dedupe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/dedupe"
)

// outcome is a verified outcome of the small hand-made cases.
func outcome(c, receipt, person, device string, at int) prereg.Outcome {
	return prereg.Outcome{
		Receipt: receipt, Campaign: c, Window: "d9", Provider: "pass", Verdict: prereg.VerdictVerified,
		IdentityKey: key("p", person), DeviceKey: key("d", device), Birthdate: "1990-08-19", ClaimedBirthdate: "1990-08-19",
		Phone: prereg.Sealed{KeyID: "k1", Data: []byte("phone-of-" + receipt)}, Region: "11680",
		ReceivedAt: time.Date(2021, 8, 9, 11, 0, at, 0, time.UTC),
	}
}

func TestHeldReviewAndContactRule(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := loadCampaign(t, e.campaigns, 2, 1, 100) // a cap of one person per device
	pv := outcome(c.ID, "r5", "alice", "alice-pc", 5)
	pv.PhoneVerified = true
	pv2 := outcome(c.ID, "r6", "alice", "alice-tablet", 6)
	pv2.PhoneVerified = true
	w := &world{campaign: c, outcomes: []prereg.Outcome{
		outcome(c.ID, "r1", "alice", "shared", 1), // registers alice
		outcome(c.ID, "r2", "bob", "shared", 2),   // held: second person on the device
		outcome(c.ID, "r3", "carol", "shared", 3), // held
		outcome(c.ID, "r4", "alice", "alice-phone", 4),
		pv,                                       // provider-verified phone: replaces alice's
		pv2,                                      // a second verified phone: the first verified stays
		outcome(c.ID, "r7", "dave", "shared", 7), // held; dave also registers himself
		outcome(c.ID, "r8", "dave", "dave-phone", 8),
	}}
	w.publish(t, e.js.JS)
	e.startWorker(t, e.js.JS, dedupe.Config{})
	e.waitDecisions(t, c.ID, len(w.outcomes))
	ds := e.decisions(t, c.ID)
	require.Equal(t, prereg.KindRegistered, ds["r1"].Kind)
	for _, r := range []string{"r2", "r3", "r7"} {
		require.Equal(t, decided{Kind: prereg.KindHeld, Reason: prereg.ReasonDeviceLimit, Identity: ds[r].Identity}, ds[r], r)
	}
	require.Equal(t, prereg.ReasonOtherDevice, ds["r4"].Reason)
	require.Equal(t, prereg.KindRegistered, ds["r8"].Kind)

	ctx := context.Background()
	var phone []byte
	var verified bool
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT phone_enc, phone_verified FROM registrations WHERE identity_key = $1`, key("p", "alice")).Scan(&phone, &verified))
	require.Equal(t, "phone-of-r5", string(phone), "the first provider-verified phone replaces an unverified one, a later one does not")
	require.True(t, verified)

	a := &dedupe.Admin{Store: e.store, Now: time.Now, Log: slog.New(slog.DiscardHandler), Reviewer: func(*http.Request) string { return "admin:operator" }}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/v1/held", a.ServeHeld)
	mux.HandleFunc("POST /admin/v1/held/{submission}/release", a.ServeRelease)
	mux.HandleFunc("POST /admin/v1/held/{submission}/reject", a.ServeReject)
	do := func(method, path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		return rec.Code, body
	}

	code, body := do("GET", "/admin/v1/held?campaign="+c.ID)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["held"], 3)

	regs := func() int {
		var n int
		require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM registrations WHERE campaign = $1`, c.ID).Scan(&n))
		return n
	}
	require.Equal(t, 2, regs())

	for _, tc := range []struct {
		name, path   string
		status       int
		alreadyReg   bool
		registersNew bool
	}{
		{name: "release registers bob", path: "/admin/v1/held/r2/release", status: http.StatusOK, registersNew: true},
		{name: "release of dave finds him registered", path: "/admin/v1/held/r7/release", status: http.StatusOK, alreadyReg: true},
		{name: "reject carol", path: "/admin/v1/held/r3/reject", status: http.StatusOK},
		{name: "a second review conflicts", path: "/admin/v1/held/r2/reject", status: http.StatusConflict},
		{name: "not held", path: "/admin/v1/held/r1/release", status: http.StatusNotFound},
		{name: "unknown", path: "/admin/v1/held/nope/release", status: http.StatusNotFound},
	} {
		before := regs()
		code, body := do("POST", tc.path)
		require.Equal(t, tc.status, code, tc.name)
		if tc.alreadyReg {
			require.Equal(t, true, body["already_registered"], tc.name)
		}
		want := before
		if tc.registersNew {
			want++
		}
		require.Equal(t, want, regs(), tc.name)
	}
	var review, by string
	var regOf string
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT d.review, d.reviewed_by, r.first_receipt FROM decisions d JOIN registrations r ON r.id = d.registration_id WHERE d.receipt = 'r2'`).Scan(&review, &by, &regOf))
	require.Equal(t, []string{"released", "admin:operator", "r2"}, []string{review, by, regOf})
	code, body = do("GET", "/admin/v1/held?campaign="+c.ID)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body["held"], "nothing left to review")
}

func TestReportFormatsCarryNoPersonalData(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := loadCampaign(t, e.campaigns, 4, 4, 400)
	w := newWorld(c, 5, 150)
	w.publish(t, e.js.JS)
	e.startWorker(t, e.js.JS, dedupe.Config{})
	ds := score(t, e, w)

	rep, err := e.store.DedupeReport(context.Background(), c.ID, "", 5, time.Now())
	require.NoError(t, err)
	require.Equal(t, int64(len(w.outcomes)), rep.Totals.Submissions)
	require.Equal(t, int64(len(w.people)), rep.Totals.PeopleRegistered)
	var held, claim int64
	for _, d := range ds {
		if d.Kind == prereg.KindHeld {
			held++
		}
		if d.Reason == prereg.ReasonClaimSeen {
			claim++
		}
	}
	require.Equal(t, held, rep.Totals.HeldTotal())
	require.Equal(t, claim, rep.ProviderCallsSaved)
	require.Equal(t, int64(len(w.rejected)), rep.Totals.RejectedTotal())
	require.Len(t, rep.TopDevices, 5)
	require.Equal(t, roleBot, w.devices[deviceByPrefix(w, rep.TopDevices[0].Device)], "the top device is a bot")

	for _, format := range []string{dedupe.FormatText, dedupe.FormatJSON, dedupe.FormatCSV, dedupe.FormatHTML} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, rep.Write(&buf, format))
			out := buf.String()
			require.Contains(t, out, c.ID)
			for _, p := range w.people {
				require.NotContains(t, out, p[:DeviceHashShown+4], "no identity key")
			}
			for d := range w.devices {
				require.NotContains(t, out, d, "no whole device key")
			}
			require.NotContains(t, out, "sealed-")
		})
	}
	_, err = e.store.DedupeReport(context.Background(), "no-such-campaign", "", 5, time.Now())
	require.ErrorIs(t, err, prereg.ErrCampaignNotFound)
}

// DeviceHashShown is how much of a key the report may show.
const DeviceHashShown = 16

func deviceByPrefix(w *world, prefix string) string {
	for d := range w.devices {
		if strings.HasPrefix(d, prefix) {
			return d
		}
	}
	return ""
}
