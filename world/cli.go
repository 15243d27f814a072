package world

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prereg/prereg/sim"
)

// syncAlwaysUsage is the help of --sync-always (Options.SyncAlways).
const syncAlwaysUsage = "every intent on disk before its 202: the embedded JetStream fsyncs each write (sync_interval: always) and intake uses group commit"

// Flags defines the flags of `prereg dev` on fs, with their defaults,
// into o.
func (o *Options) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "HTTP listen address (intake, admin, metrics)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the database when stopping")
	fs.IntVar(&o.Clinics, "clinics", 2000, "clinics in the simulated inventory")
	fs.BoolVar(&o.SyncAlways, "sync-always", false, syncAlwaysUsage)
	fs.DurationVar(&o.OpenFor, "open-for", sim.DemoOpenFor, "how long window \"open\" stays open; a few minutes to follow it to its published lottery round (docs/OPERATIONS.md)")
}

// Flags defines the flags of `prereg demo` on fs, with their defaults,
// into o.
func (o *DemoOptions) Flags(fs *flag.FlagSet) {
	fs.IntVar(&o.Submissions, "submissions", 100_000, "submissions in the surge (about 2.5 per person)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the population and the surge")
	fs.BoolVar(&o.Keep, "keep", false, "keep the demo's database (its name is printed) instead of dropping it")
	fs.IntVar(&o.Connections, "connections", 64, "closed-loop connections of the load generator")
	fs.Float64Var(&o.Rate, "rate", 0, "open-loop submissions per second instead of closed-loop")
	fs.BoolVar(&o.SyncAlways, "sync-always", false, syncAlwaysUsage)
}

// PrintReady writes what `prereg dev` shows once its world serves: the
// addresses, the admin tokens, the open windows and how to send a surge.
func (w *World) PrintReady(out io.Writer) {
	c := w.Campaign
	fmt.Fprintf(out, "prereg dev is ready.\n\n")
	fmt.Fprintf(out, "  citizen page     %s/\n", w.BaseURL)
	fmt.Fprintf(out, "  campaign         %s/v1/campaigns/%s\n", w.BaseURL, c.ID)
	fmt.Fprintf(out, "  submit (JSON)    POST %s/v1/intents\n", w.BaseURL)
	fmt.Fprintf(out, "  console          %s/admin/ (operator or auditor token)\n", w.BaseURL)
	fmt.Fprintf(out, "  dedupe report    %s/admin/v1/reports/dedupe?campaign=%s&format=html (auditor token)\n", w.BaseURL, c.ID)
	fmt.Fprintf(out, "  metrics          %s/metrics\n", w.BaseURL)
	fmt.Fprintf(out, "  health           %s/healthz  %s/readyz\n\n", w.BaseURL, w.BaseURL)
	fmt.Fprintf(out, "Admin tokens (Authorization: Bearer TOKEN):\n")
	for _, t := range w.Config.AdminTokens.Tokens() {
		role, token, _ := strings.Cut(t, ":")
		fmt.Fprintf(out, "  %-9s %s\n", role, token)
	}
	fmt.Fprintf(out, "\nCampaign %q: windows open now for birth-date digits %v (until %s).\n", c.ID, sim.DemoOpenDigits, c.Windows[0].Closes.Format(time.RFC3339))
	fmt.Fprintf(out, "Identity tokens for the simulated providers come from the surge: try\n")
	fmt.Fprintf(out, "  prereg loadgen --target %s --submissions 2000\n", w.BaseURL)
	fmt.Fprintf(out, "Database %s (%s). Stop with Ctrl-C.\n", w.DB.Name, map[bool]string{true: "kept", false: "dropped at exit"}[w.DB.Keep])
}
