package scheduler

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// DefaultRoundEvery is how often a RoundClock looks at the windows: a
// seed is committed at most this long after its window opens, an input
// frozen at most this long after its window closes.
const DefaultRoundEvery = 5 * time.Second

// RoundClock is the service that keeps the lottery rounds on the clock
// with no operator step to forget: every Every it calls AdvanceRounds for
// each campaign, committing the seed of every window that has opened and
// freezing the input of every window that has closed. It may run on every
// replica: the database keeps the first commitment and the first freeze.
// A failed pass is logged and tried again at the next tick; a window it
// missed stays loud, since a lottery without a committed seed is refused.
type RoundClock struct {
	Allocator *Allocator
	// Campaigns lists the ids of the campaigns to keep.
	Campaigns func(ctx context.Context) ([]string, error)
	Every     time.Duration
	Log       *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Start makes a first pass at once (a campaign loaded with a window
// already open gets its seed now), then one every Every until Stop.
func (c *RoundClock) Start(ctx context.Context) error {
	c.Every = cmp.Or(c.Every, DefaultRoundEvery)
	c.Log = cmp.Or(c.Log, slog.New(slog.DiscardHandler))
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.Every)
		defer t.Stop()
		for {
			c.pass(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the passes and waits for the one in flight.
func (c *RoundClock) Stop() {
	c.once.Do(func() {
		if c.cancel != nil {
			c.cancel()
			<-c.done
		}
	})
}

func (c *RoundClock) pass(ctx context.Context) {
	ids, err := c.Campaigns(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.Log.Error("lottery rounds: list campaigns", slog.Any("err", err))
		}
		return
	}
	for _, id := range ids {
		if err := c.Allocator.AdvanceRounds(ctx, id); err != nil && ctx.Err() == nil {
			c.Log.Error("lottery rounds", slog.String("campaign", id), slog.Any("err", err))
		}
	}
}

// RoundHandler serves GET /admin/v1/lottery/{campaign}/{window}: the
// window's round file (PublishRound), what `prereg lottery publish`
// writes. 404 when the campaign or window is unknown, or nothing of the
// round is committed yet.
func RoundHandler(a *Allocator, log *slog.Logger) http.Handler {
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		campaignID, window := r.PathValue("campaign"), r.PathValue("window")
		c, err := a.store.Campaign(r.Context(), campaignID)
		if err == nil {
			if _, ok := c.Window(window); !ok {
				err = ErrUnknownWindow
			}
		}
		if err == nil {
			var f RoundFile
			if f, err = a.PublishRound(r.Context(), campaignID, window); err == nil {
				httpapi.WriteJSON(w, http.StatusOK, f)
				return
			}
		}
		switch {
		case errors.Is(err, ErrNoSeed), errors.Is(err, ErrNotFrozen):
			httpapi.WriteError(w, httpapi.CodeNotFound, map[string]any{"message": err.Error()})
		case errors.Is(err, ErrUnknownWindow), errors.Is(err, prereg.ErrCampaignNotFound), errors.Is(err, prereg.ErrNotFound):
			httpapi.WriteError(w, httpapi.CodeNotFound, nil)
		default:
			log.Error("lottery round", slog.Any("err", err))
			httpapi.WriteError(w, httpapi.CodeInternal, nil)
		}
	})
}
