package bench

import (
	"errors"
	"flag"
	"fmt"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/scheduler"
	"github.com/prereg/prereg/sim"
)

// Flags defines the flags of `prereg bench intake` on fs, with their
// defaults, into o.
func (o *IntakeOptions) Flags(fs *flag.FlagSet) {
	fs.DurationVar(&o.Duration, "duration", 4e9, "measured time of each mode in each round")
	fs.IntVar(&o.Connections, "connections", 64, "closed-loop connections of the load generator")
	fs.IntVar(&o.Rounds, "rounds", 5, "rounds; each runs bare, naive, intake, intake_synced in turn")
	fs.DurationVar(&o.Overload, "overload-duration", 60e9, "open-loop overload run at 1.5 times the measured capacity, server and generator on CPUs of their own (0 skips every overload run)")
	fs.DurationVar(&o.Overload3x, "overload-3x-duration", 30e9, "then the run at 3 times the capacity (0 skips it)")
	fs.StringVar(&o.OverloadServer, "overload-server", "overload", "the server of the overload run: overload (intake), bare (the generator's own limit), or refuse (how many submissions one core can refuse: the ceiling of any shedding inside the process)")
	fs.StringVar(&o.ProfileDir, "profile-dir", "", "write a CPU profile of each server to DIR/MODE.prof and its live heap at the end to DIR/MODE.heap.prof")
	fs.BoolVar(&o.BareFasthttp, "bare-fasthttp", false, "also run the bare handler on fasthttp (the server intake runs on) in every round, and print intake's ratio to it")
	fs.IntVar(&o.OverloadConnections, "overload-connections", 2048, "connections of the overload run's open-loop generator (each carries one request at a time)")
	fs.Float64Var(&o.OverloadRate, "overload-rate", 0, "offer this many requests/s in the overload run instead of 1.5 times the measured capacity (0: 1.5 times), to compare settings at one rate")
	fs.BoolVar(&o.RefuseFloor, "refuse-floor", true, "after the overload runs, offer the same rates to intake refusing every submission: the latency floor of this machine and generator at those rates")
}

// Check refuses options `prereg bench intake` cannot run with.
func (o IntakeOptions) Check() error {
	if o.OverloadServer != "overload" && o.OverloadServer != "bare" && o.OverloadServer != "refuse" {
		return fmt.Errorf("--overload-server %q: want overload, bare or refuse", o.OverloadServer)
	}
	if o.Duration < 5e8 || o.Connections < 1 || o.OverloadConnections < 1 || o.OverloadRate < 0 || o.Rounds < 0 || o.Overload < 0 || o.Overload3x < 0 {
		return errors.New("want --duration >= 500ms, --connections >= 1, --overload-connections >= 1, --overload-rate >= 0, --rounds >= 0 (0: overload run only), --overload-duration >= 0, --overload-3x-duration >= 0")
	}
	return nil
}

// Flags defines the flags of `prereg bench intake-server` on fs, with
// their defaults, into o.
func (o *IntakeServerOptions) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Mode, "mode", "overload", "which server: bare, bare_fasthttp, naive, intake, intake_synced, overload (intake with every guard on) or refuse")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "the bench's database (bench intake creates it)")
	fs.IntVar(&o.Connections, "connections", 64, "the naive design's pool size")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the server's whole life to this file")
	fs.StringVar(&o.HeapProfile, "heapprofile", "", "write the server's live heap to this file when it is told to stop")
	fs.StringVar(&o.CPUs, "cpus", "", "pin the server's process to these CPUs, e.g. 0 or 2,3 (default: not pinned)")
}

// Flags defines the flags of `prereg bench verify` on fs, with their
// defaults, into o.
func (o *VerifyOptions) Flags(fs *flag.FlagSet) {
	fs.IntVar(&o.Intents, "intents", 20_000, "intents verified in the 0 ms phase")
	fs.IntVar(&o.Intents50ms, "intents-50ms", 12_800, "intents verified in the 50 ms phase (10 s at the ceiling)")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "the provider's concurrency limit (bulkhead)")
	fs.DurationVar(&o.Latency, "latency", 5e7, "the provider's latency in the second phase")
	fs.IntVar(&o.Runs, "runs", 3, "runs of each phase; the medians are reported")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole bench to this file")
}

// Check refuses options `prereg bench verify` cannot run with.
func (o VerifyOptions) Check() error {
	if o.Intents < 1 || o.Intents50ms < 1 || o.Concurrency < 1 || o.Runs < 1 || o.Latency <= 0 {
		return errors.New("want positive --intents, --intents-50ms, --concurrency, --runs and --latency")
	}
	return nil
}

// Flags defines the flags of `prereg bench dedupe` on fs, with their
// defaults, into o.
func (o *DedupeOptions) Flags(fs *flag.FlagSet) {
	fs.IntVar(&o.Submissions, "submissions", FullDedupeSize, "verified submissions to decide (about two minutes on 2 cores; 200000 for a quick look)")
	fs.IntVar(&o.Shards, "shards", 16, "identity shards")
	fs.IntVar(&o.Batch, "batch", 1000, "dedupe batch size")
	fs.IntVar(&o.Workers, "workers", 4, "dedupe workers, each owning a disjoint set of shards")
	fs.IntVar(&o.RebuildRows, "rebuild-rows", 2_000_000, "registrations for the Bloom rebuild measurement")
	fs.IntVar(&o.BloomPeople, "bloom-people", 0, "people the Bloom filters are sized for (default: the bench's people)")
	fs.Float64Var(&o.BloomFPR, "bloom-fpr", campaign.DefaultBloomFPRate, "Bloom filters' target false-positive rate")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the synthetic mix")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the deciding phase to this file")
}

// Check refuses options `prereg bench dedupe` cannot run with.
func (o DedupeOptions) Check() error {
	if o.Submissions < 1000 || o.Shards < 1 || o.Batch < 1 || o.Workers < 1 || o.Workers > o.Shards || o.RebuildRows < 1 || o.BloomFPR <= 0 || o.BloomFPR >= 1 {
		return errors.New("want --submissions >= 1000 and positive --shards, --batch, --rebuild-rows, 0 < --bloom-fpr < 1")
	}
	return nil
}

// Flags defines the flags of `prereg bench allocate` on fs, with their
// defaults, into o.
func (o *AllocateOptions) Flags(fs *flag.FlagSet) {
	fs.IntVar(&o.Registrations, "registrations", DefaultAllocateSize, fmt.Sprintf("registrations of the window (one full day: %d, about ten times as long)", FullAllocateSize))
	fs.IntVar(&o.Clinics, "clinics", sim.DefaultClinics, "clinics of the generated inventory")
	fs.IntVar(&o.Days, "days", 14, "days of the schedule")
	fs.Float64Var(&o.CapacityScale, "capacity-scale", 1, "multiplies every clinic's capacity (1: about 9.8 million places over 14 days)")
	fs.IntVar(&o.Chunk, "chunk", scheduler.DefaultChunkSize, "registrations written per transaction")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the inventory and the registrations")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench database for inspection (its name goes to stderr)")
}

// Check refuses options `prereg bench allocate` cannot run with.
func (o AllocateOptions) Check() error {
	if o.Registrations < 1 || o.Clinics < 1 || o.Days < 1 || o.CapacityScale < 0 || o.Chunk < 1 {
		return errors.New("want positive --registrations, --clinics, --days, --chunk and --capacity-scale >= 0")
	}
	return nil
}

// Flags defines the flags of `prereg bench notify` on fs, with their
// defaults, into o.
func (o *NotifyOptions) Flags(fs *flag.FlagSet) {
	fs.IntVar(&o.Messages, "messages", 100_000, "outbox rows to drain")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "sends in flight, for notify and for the ceiling loop alike")
	fs.IntVar(&o.Batch, "batch", 512, "rows each claim loop claims at once")
	fs.IntVar(&o.Loops, "loops", 4, "notify's claim loops (they share --concurrency)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the notify run to this file")
}

// Check refuses options `prereg bench notify` cannot run with.
func (o NotifyOptions) Check() error {
	if o.Messages < 100 || o.Concurrency < 1 || o.Batch < 1 || o.Loops < 1 {
		return errors.New("want --messages >= 100 and positive --concurrency, --batch, --loops")
	}
	return nil
}
