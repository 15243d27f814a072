package keys

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Alarm is a stage's missing-key state. A sealed value or a campaign that
// names a key id the process was not given cannot be worked on here until
// the process is restarted with that key: it is the operator's error, so
// the stage raises the alarm, stops taking work (what it holds goes back
// for a process that has the key), and its Err makes /readyz false. The
// alarm logs once per change of state, never once per message.
//
// The zero Alarm is ready to use and silent; set Stage and Logger.
type Alarm struct {
	// Stage names the stage in the log line and in Err.
	Stage  string
	Logger *slog.Logger

	raised atomic.Bool
	mu     sync.Mutex
	ids    []string // the missing key ids, sorted
}

// Raise records err when it is an unknown key id (and reports true), or
// does nothing (false): `if alarm.Raise(err) { stop }`.
func (a *Alarm) Raise(err error) bool {
	var uk *UnknownKeyError
	if !errors.As(err, &uk) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Contains(a.ids, uk.ID) {
		return true
	}
	a.set(append(slices.Clone(a.ids), uk.ID))
	return true
}

// Set replaces the missing key ids with those of errs (the unknown key
// errors among them): for a stage that re-checks everything it depends
// on at once, whose alarm may also clear.
func (a *Alarm) Set(errs []error) {
	var ids []string
	for _, err := range errs {
		var uk *UnknownKeyError
		if errors.As(err, &uk) && !slices.Contains(ids, uk.ID) {
			ids = append(ids, uk.ID)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(ids)
}

// set logs and stores a new set of ids when it differs from the last.
func (a *Alarm) set(ids []string) {
	slices.Sort(ids)
	if slices.Equal(ids, a.ids) {
		return
	}
	a.ids = ids
	a.raised.Store(len(ids) > 0)
	if a.Logger == nil {
		return
	}
	if len(ids) == 0 {
		a.Logger.Info(a.Stage + ": every key id is configured again; working")
		return
	}
	a.Logger.Error(a.Stage+": stopped: work names HMAC or encryption key ids this process is not configured with; restart it with those keys (docs/SECURITY.md, \"Keys and rotation\")",
		slog.Any("key_ids", ids))
}

// Raised reports whether a key is missing; cheap enough for every message.
func (a *Alarm) Raised() bool { return a.raised.Load() }

// Err is nil, or the readiness problem naming the missing key ids.
func (a *Alarm) Err() error {
	if !a.raised.Load() {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Errorf("%s: stopped: key ids not configured: %s", a.Stage, strings.Join(a.ids, ", "))
}
