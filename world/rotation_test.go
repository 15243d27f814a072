package world_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/intake"
	"github.com/prereg/prereg/keys"
	"github.com/prereg/prereg/postgres/pgtest"
	"github.com/prereg/prereg/sim"
	"github.com/prereg/prereg/world"
)

// Both keys rotate in the middle of a surge: the system is restarted with
// a new HMAC key and a new encryption key current, the old ones kept.
// Nothing submitted before is lost, nobody who returns after the rotation
// is registered a second time (the campaign keeps the HMAC key it started
// with), an Idempotency-Key retried across the rotation gets its first
// receipt, every receipt issued before still looks up, and every phone
// opens.
func TestKeyRotationMidSurge(t *testing.T) {
	t.Parallel()
	srv := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	h1, e1, h2, e2 := "h1:"+keys.Random(32), "e1:"+keys.Random(32), "h2:"+keys.Random(32), "e2:"+keys.Random(32)
	vars := map[string]string{"PREREG_HMAC_KEY": h1, "PREREG_ENC_KEY": e1}
	getenv := func(k string) string { return vars[k] }
	cfg, err := config.FromEnv(getenv, true)
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	w, err := world.Start(ctx, world.Options{Config: cfg, DatabaseURL: srv.URL, Logger: log, Clinics: 20, Seed: 11})
	require.NoError(t, err)
	defer w.Close()
	c := w.Campaign

	// People born on days ending in an open digit, each with a phone of
	// their own; every submission from a device and an address of its own,
	// so that no limit or device cap gets in the way of what is counted.
	type person struct{ id, birth, phone string }
	people := make([]person, 300)
	for i := range people {
		people[i] = person{
			id:    fmt.Sprintf("rot-%03d", i),
			birth: fmt.Sprintf("%d-%02d-%02d", 1975+i%25, 1+i%12, 10+sim.DemoOpenDigits[i%len(sim.DemoOpenDigits)]),
			phone: fmt.Sprintf("010-%04d-%04d", 5000+i/100, i),
		}
	}
	type sent struct {
		receipt string
		birth   string
	}
	var receipts []sent
	submissions := 0
	submit := func(base string, p person, idemKey string) string {
		t.Helper()
		submissions++
		// A retry with an Idempotency-Key sends the same body from the
		// same device, token included.
		nonce, device := submissions, "device-"+strconv.Itoa(submissions)
		if idemKey != "" {
			nonce, device = -1, "device-"+idemKey
		}
		token := w.IdPs["pass"].Issue(sim.TokenClaims{Person: p.id, Birthdate: p.birth, Phone: "+82" + p.phone[1:], Device: device, Nonce: nonce})
		body, err := json.Marshal(intake.Request{Campaign: c.ID, Provider: "pass", IdentityToken: token, Birthdate: p.birth,
			Phone: p.phone, Region: "11110", DeviceID: device})
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/intents", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", submissions>>16&255, submissions>>8&255, submissions&255))
		if idemKey != "" {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var ans struct {
			Receipt string `json:"receipt"`
		}
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "submission %d", submissions)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
		receipts = append(receipts, sent{receipt: ans.Receipt, birth: p.birth})
		return ans.Receipt
	}

	decided := func(rs []sent) int {
		t.Helper()
		list := make([]string, len(rs))
		for i, r := range rs {
			list[i] = r.receipt
		}
		var n int
		require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(DISTINCT receipt) FROM decisions WHERE receipt = ANY($1)`, list).Scan(&n))
		return n
	}

	// Before: 150 people, 25 of them twice, 20 with an Idempotency-Key.
	// The first 95 are registered before the rotation (those from 45 on
	// come back after it); the rest are still on their way when it comes.
	idem := map[string]string{}
	for i := range 95 {
		if i < 20 {
			idem[people[i].id] = submit(w.BaseURL, people[i], "retry-"+people[i].id)
			continue
		}
		submit(w.BaseURL, people[i], "")
	}
	first := slices.Clone(receipts)
	require.Eventually(t, func() bool { return decided(first) == len(first) }, 2*time.Minute, 100*time.Millisecond,
		"the first 95 decided under the first keys; %s", w.PipelineState(ctx))
	for i := 95; i < 150; i++ {
		submit(w.BaseURL, people[i], "")
	}
	for i := 20; i < 45; i++ {
		submit(w.BaseURL, people[i], "")
	}
	before := len(receipts)

	// The rotation, while those are still on their way: the process
	// restarts with h2 and e2 current, h1 and e1 kept.
	w.System.Stop()
	t.Logf("%d of the %d submissions before the rotation decided after it", before-decided(receipts), before)
	vars["PREREG_HMAC_KEY"], vars["PREREG_ENC_KEY"] = h2+","+h1, e2+","+e1
	cfg, err = config.FromEnv(getenv, true)
	require.NoError(t, err, "serve takes the rotated keys")
	gwURL, stopGW, err := world.ServeLoopback(w.Gateway.Handler())
	require.NoError(t, err)
	defer stopGW()
	sys, err := app.New(app.Options{
		Roles: app.AllRoles, Logger: log, Pool: w.Pool, NC: w.NC, Config: cfg,
		Intake: app.IntakeOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Notify: app.NotifyOptions{GatewayURL: gwURL, Rate: 5000},
	})
	require.NoError(t, err)
	require.NoError(t, sys.Start(ctx))
	defer sys.Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	server := sys.NewServer(log)
	go func() { _ = server.Serve(ln) }()
	defer func() { _ = server.Shutdown(context.Background()) }()
	base := "http://" + ln.Addr().String()

	// After: 150 new people, 15 of them twice, 50 people from before back
	// again, and the 20 idempotent submissions retried.
	for i := 150; i < 300; i++ {
		submit(base, people[i], "")
	}
	for i := 150; i < 165; i++ {
		submit(base, people[i], "")
	}
	for i := 45; i < 95; i++ {
		submit(base, people[i], "")
	}
	for i := range 20 {
		require.Equal(t, idem[people[i].id], submit(base, people[i], "retry-"+people[i].id),
			"an Idempotency-Key retried across the rotation is the same submission")
	}

	distinct := map[string]bool{}
	for _, r := range receipts {
		distinct[r.receipt] = true
	}
	all := make([]string, 0, len(distinct))
	for r := range distinct {
		all = append(all, r)
	}
	// Nothing lost: every receipt decided, once.
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE receipt = ANY($1)`, all).Scan(&n))
		return n == len(all)
	}, 2*time.Minute, 200*time.Millisecond, "every accepted submission decided; %s", w.PipelineState(ctx))

	kinds := map[string]int{}
	rows, err := w.Pool.Query(ctx, `SELECT kind, count(*) FROM decisions WHERE campaign = $1 GROUP BY 1`, c.ID)
	require.NoError(t, err)
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		kinds[k] = n
	}
	require.NoError(t, rows.Err())
	// Nobody twice: 300 people, 300 registrations; 25 + 15 + 50 returning
	// submissions are duplicates of them, whichever key was current.
	require.Equal(t, map[string]int{"registered": 300, "duplicate": 90}, kinds, "decisions by kind")
	var registrations int
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT count(*) FROM registrations WHERE campaign = $1`, c.ID).Scan(&registrations))
	require.Equal(t, 300, registrations)
	var pin string
	require.NoError(t, w.Pool.QueryRow(ctx, `SELECT hmac_key FROM campaigns WHERE id = $1`, c.ID).Scan(&pin))
	require.Equal(t, "h1", pin, "the campaign keeps the HMAC key it started with")

	// Every receipt from before still looks up on the rotated process.
	for i, r := range receipts[:before] {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/intents/"+r.receipt+"?birthdate="+r.birth, nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("172.16.%d.%d", i>>8, i&255))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var ans struct {
			Status prereg.Status `json:"status"`
		}
		require.Equal(t, http.StatusOK, resp.StatusCode, "receipt %d of before the rotation", i)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
		resp.Body.Close()
		require.Contains(t, []prereg.Status{prereg.StatusRegistered, prereg.StatusDuplicate}, ans.Status)
	}

	// Every phone opens with the rotated keys, whichever key sealed it.
	ks, err := keys.ParseKeys(vars["PREREG_ENC_KEY"], 32)
	require.NoError(t, err)
	sealer, err := keys.NewSealer(ks)
	require.NoError(t, err)
	rows, err = w.Pool.Query(ctx, `SELECT campaign, phone_kid, phone_enc FROM registrations WHERE campaign = $1`, c.ID)
	require.NoError(t, err)
	byKey := map[string]int{}
	for rows.Next() {
		var campaign string
		var phone prereg.Sealed
		require.NoError(t, rows.Scan(&campaign, &phone.KeyID, &phone.Data))
		_, err := sealer.Open(phone, []byte(campaign))
		require.NoError(t, err, "a phone sealed under %s", phone.KeyID)
		byKey[phone.KeyID]++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 300, byKey["e1"]+byKey["e2"])
	require.Positive(t, byKey["e2"], "phones sealed after the rotation are under the new key")
}
