package scheduler_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/campaign"
	"github.com/prereg/prereg/scheduler"
)

// country is clinics over many regions of several provinces, like the
// scale bench's inventory: per clinic capacity per band.
func country(clinics, capacity int) []clinic {
	out := make([]clinic, clinics)
	for i := range out {
		province, gu := 11+i%17, (i/17)%40
		region := fmt.Sprintf("%02d%03d", province, 100+gu*10)
		out[i] = clinic{id: fmt.Sprintf("c-%s-%04d", region, i), region: region,
			lat: 34 + float64(province%6)*0.5 + float64(gu)*0.01, lng: 126 + float64(province/6)*0.5 + float64(gu)*0.01, capacity: capacity}
	}
	return out
}

// nationwide is n registrations of window d9 spread over the clinics'
// regions, a third preferring a clinic, a fifth with an earliest date.
func nationwide(n int, clinics []clinic) []reg {
	out := make([]reg, n)
	for i := range out {
		c := clinics[(i*7919)%len(clinics)]
		out[i] = reg{window: "d9", region: c.region, arrival: time.Duration(i) * time.Millisecond}
		if i%3 == 0 {
			out[i].clinic = c.id
		}
		if i%5 == 0 {
			out[i].earliest = scheduleDay0.AddDate(0, 0, 1+i%4)
		}
	}
	return out
}

// heapWatch samples the heap while a run goes: the peak of the heap's
// objects (live or not yet collected: what the process holds) and the peak
// of the live heap as the collector last found it.
type heapWatch struct {
	stop        chan struct{}
	done        sync.WaitGroup
	base, alloc uint64
	peakHeap    uint64
	peakLive    uint64
}

var heapMetrics = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes", "/gc/heap/allocs:bytes"}

func readHeap() (objects, live, allocs uint64) {
	s := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
}

func watchHeap() *heapWatch {
	runtime.GC()
	h := &heapWatch{stop: make(chan struct{})}
	h.base, _, h.alloc = readHeap()
	h.done.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			objects, live, _ := readHeap()
			h.peakHeap, h.peakLive = max(h.peakHeap, objects), max(h.peakLive, live)
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	})
	return h
}

// end stops the watch and returns, beyond what the heap held before the
// run: its peak, the peak of its live part, and the bytes allocated.
func (h *heapWatch) end() (peak, live, allocated uint64) {
	close(h.stop)
	h.done.Wait()
	_, _, allocs := readHeap()
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return sub(h.peakHeap, h.base), sub(h.peakLive, h.base), allocs - h.alloc
}

// BenchmarkAllocateMemory runs one real lottery allocation of a closed
// window (freezing its round, as `prereg allocate` does when nothing froze
// it at the close) over n registrations and 1,000 clinics, with the
// campaign's default distance bound, and reports
// what the run held per registration: the peak of the heap above what it
// held before (peak-B/reg), the peak of the live heap (live-B/reg), and
// the bytes allocated (alloc-B/reg). ns/op is the run alone.
func BenchmarkAllocateMemory(b *testing.B) {
	for _, n := range []int{50_000, 200_000} {
		b.Run(fmt.Sprintf("regs=%d", n), func(b *testing.B) {
			ctx := context.Background()
			clinics := country(1000, 1)
			var peak, live, allocated uint64
			runs := 0
			for b.Loop() {
				b.StopTimer()
				w := newWorld(b, 14, 3, clinics, func(f *campaign.File) { f.Allocation = nil })
				w.insert(b, nationwide(n, clinics))
				a := w.allocator(1, 0)
				w.commitSeed(b, a, "d9")
				h := watchHeap()
				b.StartTimer()
				res, err := a.Run(ctx, scheduler.Request{Campaign: campaignID, Window: "d9"})
				b.StopTimer()
				p, l, al := h.end()
				require.NoError(b, err)
				require.Equal(b, n, res.Registrations)
				peak, live, allocated, runs = peak+p, live+l, allocated+al, runs+1
				w.db.Pool.Close()
				b.StartTimer()
			}
			per := float64(runs * n)
			b.ReportMetric(float64(peak)/per, "peak-B/reg")
			b.ReportMetric(float64(live)/per, "live-B/reg")
			b.ReportMetric(float64(allocated)/per, "alloc-B/reg")
		})
	}
}
