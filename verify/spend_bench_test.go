package verify

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSpendGuard is one provider call as verify makes it, allow then
// answered, at bench scale's 3,500 calls a second, each from one of a
// million prefixes in turn (most of a surge's prefixes call once), one
// in ten of them invalid.
func BenchmarkSpendGuard(b *testing.B) {
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)
	}
	g := newSpendGuard(60, 1000)
	now := time.Date(2021, 8, 9, 21, 0, 0, 0, time.UTC)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second / 3500)
		key := keys[i&(len(keys)-1)]
		if ok, _, _ := g.allow(now, "c", key); ok {
			g.answered(now, key, i%10 == 0)
		}
		i++
	}
}
