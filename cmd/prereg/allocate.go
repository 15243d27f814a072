package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/prereg/prereg/app"
	"github.com/prereg/prereg/bench"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/scheduler"
)

func init() {
	register(command{name: "allocate", summary: "batch allocation of a window's registrations (dry run first)", run: cmdAllocate})
}

func cmdAllocate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "allocate", "--campaign C --window W [--dry-run] [--policy lottery|fcfs] [--format text|json]")
	campaignID := fs.String("campaign", "", "campaign id (required)")
	window := fs.String("window", "", "window id (required)")
	dry := fs.Bool("dry-run", false, "plan and report, write nothing")
	policy := fs.String("policy", string(scheduler.PolicyLottery), "lottery (by the committed seed) or fcfs (by first submission)")
	format := formatFlag(fs)
	wait := fs.Bool("wait", false, "wait for another allocation of the campaign instead of failing")
	chunk := fs.Int("chunk", scheduler.DefaultChunkSize, "registrations written per transaction")
	maxKm := fs.Float64("max-distance-km", 0, "farthest region a registration may be sent to, in km (0: the campaign's allocation.max_distance_km)")
	memProfile := fs.String("memprofile", "", "write a heap profile of the run to `file` (what it allocated: go tool pprof -sample_index=alloc_space)")
	if err := parseFlags(fs, args, "campaign", "window"); err != nil {
		return err
	}
	pol, err := scheduler.ParsePolicy(*policy)
	if err != nil {
		return usagef("--policy: %v", err)
	}
	if *chunk < 1 || *maxKm < 0 {
		return usagef("want --chunk >= 1 and --max-distance-km >= 0")
	}
	cfg, _, err := env.Config(false)
	if err != nil {
		return err
	}
	if cfg.GC.GOGC == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(app.AllocateGCPercent))
		env.Logger.Debug("garbage collector target set for allocation (GOGC unset)", slog.Int("gogc", app.AllocateGCPercent))
	}
	pool, closeDB, err := env.Database(ctx, true)
	if err != nil {
		return err
	}
	defer closeDB()
	a := scheduler.New(&postgres.AllocationStore{Pool: pool}, scheduler.Config{Logger: env.Logger, ChunkSize: *chunk, MaxDistanceKm: *maxKm})
	req := scheduler.Request{Campaign: *campaignID, Window: *window, DryRun: *dry, Policy: pol, Wait: *wait}
	var bar *progressbar.ProgressBar
	if out, ok := terminal(env.Stderr); ok && *format == "text" {
		desc := "allocating"
		if *dry {
			desc = "planning (dry run)"
		}
		req.Progress = func(done, total int) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(out), progressbar.OptionSetDescription(desc),
					progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish())
			}
			_ = bar.Set(done)
		}
	}
	var res scheduler.Result
	err = (&postgres.AuditStore{Pool: pool}).Command(ctx, "allocation.start",
		fmt.Sprintf("campaign=%s window=%s dry_run=%t policy=%s", *campaignID, *window, *dry, pol), func() (err error) {
			res, err = a.Run(ctx, req)
			return err
		})
	if bar != nil {
		_ = bar.Finish()
	}
	if *memProfile != "" {
		if perr := bench.WriteHeapProfile(*memProfile); perr != nil {
			env.Logger.Warn("heap profile not written", slog.Any("err", perr))
		}
	}
	if err != nil {
		var ie *scheduler.InterruptedError
		switch {
		case errors.Is(err, scheduler.ErrNoSeed):
			return fmt.Errorf("%w: commit one with 'prereg lottery commit --campaign %s --window %s' (before the window closes), or use --policy fcfs", err, *campaignID, *window)
		case errors.As(err, &ie):
			return fmt.Errorf("%w (prereg allocate --campaign %s --window %s --policy %s)", err, ie.Run.Campaign, ie.Run.Window, ie.Run.Policy)
		case ctx.Err() != nil && !*dry:
			return fmt.Errorf("%w; run the same command again to resume it", err)
		}
		return err
	}
	return writeOutput(env, *format, res, func(w io.Writer) { scheduler.PrintResult(w, res) })
}

// terminal returns w as a file when it is a terminal: where a progress bar
// belongs.
func terminal(w io.Writer) (*os.File, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return nil, false
	}
	st, err := f.Stat()
	return f, err == nil && st.Mode()&os.ModeCharDevice != 0
}
