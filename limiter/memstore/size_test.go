package memstore_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// TestBytesPerKey: a key's entry holds its own algorithm's state only.
// Each bound is below what an entry holding all four algorithms' state
// took (fixed_window and gcra 280 bytes a key, sliding_window 470).
func TestBytesPerKey(t *testing.T) {
	const n = 20_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	for alg, bound := range map[limiter.Algorithm]float64{limiter.FixedWindow: 200, limiter.GCRA: 200, limiter.SlidingWindow: 420} {
		p := &limiter.Policy{Name: "p", Algorithm: alg, Limit: 10, Window: time.Minute}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		s := memstore.New(memstore.Options{SweepInterval: -1, TopK: 1})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, k := range keys {
			if _, err := s.Allow(context.Background(), p, k, 1); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := float64(after.HeapAlloc-before.HeapAlloc) / n
		t.Logf("%s: %.0f bytes a key", alg, per)
		if per > bound {
			t.Errorf("%s: %.0f bytes a key, want at most %.0f", alg, per, bound)
		}
		runtime.KeepAlive(s)
		s.Close()
	}
}
