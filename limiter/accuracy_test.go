package limiter_test

import (
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

func memStore(clock func() time.Time) limiter.Store {
	return memstore.New(memstore.Options{Clock: clock, SweepInterval: -1})
}

// TestSlidingWindowBounds holds sliding_window to the bounds stated in the
// package doc: at most Limit + Limit/Buckets in any span of one window under
// adversarial timing, and a mean estimate error under 2% on bursty traffic.
func TestSlidingWindowBounds(t *testing.T) {
	t.Parallel()
	const limit = 100
	window := time.Minute
	for _, buckets := range []int{1, 2, 10, 60} {
		p := &limiter.Policy{Name: "sw", Limit: limit, Window: window, Buckets: buckets}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		bound := int64(limit + limit/buckets)
		for _, step := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second} {
			acc := limitertest.Measure(p, limitertest.AdversarialTrace(limit, window, buckets, step), memStore)
			if acc.MaxInSpan > bound {
				t.Errorf("buckets %d, step %v: %d admitted in one window, bound %d", buckets, step, acc.MaxInSpan, bound)
			}
			if step == 10*time.Millisecond && acc.MaxInSpan <= limit {
				t.Errorf("buckets %d, step %v: the adversary got only %d through; the trace no longer tests the bound", buckets, step, acc.MaxInSpan)
			}
		}
	}
	p := &limiter.Policy{Name: "sw", Limit: limit, Window: window}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(3) {
		acc := limitertest.Measure(p, limitertest.BurstyTrace(seed, limit, window, 30*window), memStore)
		if acc.MeanError >= 0.02 {
			t.Errorf("seed %d: mean estimate error %.2f%%, bound 2%%", seed, 100*acc.MeanError)
		}
		if acc.MaxInSpan > limit+limit/10 {
			t.Errorf("seed %d: %d admitted in one window on bursty traffic, bound %d", seed, acc.MaxInSpan, limit+limit/10)
		}
	}
}

func TestSlidingLogIsExact(t *testing.T) {
	t.Parallel()
	p := &limiter.Policy{Name: "log", Algorithm: limiter.SlidingLog, Limit: 100, Window: time.Minute}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	acc := limitertest.Measure(p, limitertest.AdversarialTrace(100, time.Minute, 10, 10*time.Millisecond), memStore)
	if acc.MaxInSpan != 100 || acc.MeanError != 0 {
		t.Fatalf("sliding_log: max %d in a window, mean error %v; want exactly 100 and 0", acc.MaxInSpan, acc.MeanError)
	}
}
