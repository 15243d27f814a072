package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/httpapi"
)

// Admin serves the allocation routes of the admin API and runs the
// allocations they start in the background. It is a service: Stop cancels
// the runs in flight (a real run is then resumed by the next one) and waits
// for them.
type Admin struct {
	Allocator *Allocator
	Log       *slog.Logger

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	stopped bool
	wg      sync.WaitGroup
}

// Start makes the service ready to run allocations until Stop.
func (a *Admin) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Log = cmp.Or(a.Log, slog.New(slog.DiscardHandler))
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return nil
}

// Stop cancels the allocations in flight and waits for them.
func (a *Admin) Stop() {
	a.mu.Lock()
	a.stopped = true
	if a.cancel != nil {
		a.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// allocationRequest is the body of POST /admin/v1/allocations.
type allocationRequest struct {
	Campaign string `json:"campaign"`
	Window   string `json:"window"`
	DryRun   bool   `json:"dry_run"`
	Policy   string `json:"policy"`
}

// ServeStart handles POST /admin/v1/allocations: it checks the request,
// takes the campaign's lock and records the run, answers 202 with the run
// id, and allocates in the background. 409 when another allocation of the
// campaign runs, when the lottery has no committed seed, or when an
// interrupted run must be resumed first.
func (a *Admin) ServeStart(w http.ResponseWriter, r *http.Request) {
	var body allocationRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"message": "want JSON {campaign, window, dry_run, policy}"})
		return
	}
	fields := map[string]string{}
	if body.Campaign == "" {
		fields["campaign"] = "required"
	}
	if body.Window == "" {
		fields["window"] = "required"
	}
	pol, err := ParsePolicy(body.Policy)
	if err != nil {
		fields["policy"] = "want lottery or fcfs"
	}
	if len(fields) > 0 {
		httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": fields})
		return
	}
	a.mu.Lock()
	ctx := a.ctx
	if ctx == nil || a.stopped {
		a.mu.Unlock()
		httpapi.WriteError(w, httpapi.CodeOverloaded, map[string]any{"message": "not running"})
		return
	}
	a.wg.Add(1) // under mu: Stop cannot be waiting yet
	a.mu.Unlock()
	job, err := a.Allocator.Begin(r.Context(), Request{Campaign: body.Campaign, Window: body.Window, DryRun: body.DryRun, Policy: pol})
	if err != nil {
		a.wg.Done()
		a.writeError(w, err)
		return
	}
	go func() {
		defer a.wg.Done()
		if _, err := job.Execute(ctx); err != nil {
			a.Log.Error("allocation failed", slog.Int64("run", job.ID()), slog.Any("err", err))
		}
	}()
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{
		"run":        job.ID(),
		"resumed":    job.Resumed(),
		"status_url": "/admin/v1/allocations/" + strconv.FormatInt(job.ID(), 10),
	})
}

// ServeStatus handles GET /admin/v1/allocations/{id}: the run's state,
// progress (done of total) and, once done, its result.
func (a *Admin) ServeStatus(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		httpapi.WriteError(w, httpapi.CodeNotFound, nil)
		return
	}
	run, err := a.Allocator.Status(r.Context(), id)
	if err != nil {
		a.writeError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, run)
}

func (a *Admin) writeError(w http.ResponseWriter, err error) {
	var ie *InterruptedError
	switch {
	case errors.As(err, &ie):
		httpapi.WriteError(w, httpapi.CodeConflict, map[string]any{"message": ie.Error(), "interrupted_run": ie.Run.ID})
	case errors.Is(err, ErrBusy):
		httpapi.WriteError(w, httpapi.CodeConflict, map[string]any{"message": ErrBusy.Error()})
	case errors.Is(err, ErrNoSeed):
		httpapi.WriteError(w, httpapi.CodeConflict, map[string]any{"message": ErrNoSeed.Error() + ": commit one (prereg lottery commit) or use policy fcfs"})
	case errors.Is(err, ErrUnknownWindow), errors.Is(err, prereg.ErrCampaignNotFound), errors.Is(err, prereg.ErrNotFound):
		httpapi.WriteError(w, httpapi.CodeNotFound, nil)
	default:
		a.Log.Error("allocation admin", slog.Any("err", err))
		httpapi.WriteError(w, httpapi.CodeInternal, nil)
	}
}
