package notify

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prereg/prereg/keys"
)

// PhoneStore keeps the sealed phones that are opened again later;
// *postgres.PhoneStore is one.
type PhoneStore interface {
	// ResealRegistrations re-seals the phones of up to limit
	// registrations after id after, in id order, and returns the last id
	// it looked at and how many it re-sealed.
	ResealRegistrations(ctx context.Context, s *keys.Sealer, after int64, limit int) (last int64, resealed int, err error)
	// ResealHeld re-seals up to limit held decisions' phones not under
	// the current key, and returns how many (0: none left).
	ResealHeld(ctx context.Context, s *keys.Sealer, limit int) (int, error)
}

// Resealer re-seals the kept phones under the current encryption key in
// the background, a bounded batch at a time, so that a retired key opens
// nothing any more: it walks the registrations once by id and then
// follows the new ones (phones sealed by intake before a rotation reach
// dedupe after it), and re-seals held decisions at the start of its walk.
// A phone under a key this process lacks raises Keys and stops it, as it
// stops the worker.
type Resealer struct {
	Store  PhoneStore
	Sealer *keys.Sealer
	// Keys is the notify stage's key alarm, shared with the Worker.
	Keys   *keys.Alarm
	Logger *slog.Logger
	// Batch is the most phones one step reads [500]; Pause the wait
	// between steps while the walk has rows ahead [200ms], and Idle the
	// wait once it has caught up [1m].
	Batch int
	Pause time.Duration
	Idle  time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts the walk; Stop ends it.
func (r *Resealer) Start(ctx context.Context) error {
	if r.Store == nil || r.Sealer == nil || r.Keys == nil {
		return errors.New("notify: resealer: store, sealer and key alarm are required")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return errors.New("notify: resealer already started")
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		r.run(ctx)
	}()
	return nil
}

// Stop ends the walk and waits for the step in flight. Safe to call more
// than once.
func (r *Resealer) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (r *Resealer) run(ctx context.Context) {
	log := cmp.Or(r.Logger, slog.New(slog.DiscardHandler))
	batch := cmp.Or(r.Batch, 500)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	pause, idle := cmp.Or(r.Pause, 200*time.Millisecond), cmp.Or(r.Idle, time.Minute)
	var after int64
	held, total, failing := true, 0, false
	for ctx.Err() == nil {
		if r.Keys.Raised() {
			if !wait(idle) {
				return
			}
			continue
		}
		n, last, err := 0, after, error(nil)
		if held {
			n, err = r.Store.ResealHeld(ctx, r.Sealer, batch)
			held = err != nil || n == batch // again while there may be more
		} else {
			last, n, err = r.Store.ResealRegistrations(ctx, r.Sealer, after, batch)
		}
		switch {
		case r.Keys.Raise(err):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			if !failing { // once per state change, not once per step
				log.Warn("notify: re-sealing phones under the current key failed; trying again", slog.Any("err", err))
			}
			failing = true
			if !wait(idle) {
				return
			}
			continue
		}
		failing = false
		total += n
		caughtUp := !held && last == after
		after = last
		if caughtUp && total > 0 {
			log.Info("notify: phones re-sealed under the current key", slog.Int("phones", total), slog.String("key_id", r.Sealer.Current()))
			total = 0
		}
		d := pause
		if caughtUp {
			d = idle
		}
		if !wait(d) {
			return
		}
	}
}
