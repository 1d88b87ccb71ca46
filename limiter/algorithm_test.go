package limiter_test

import (
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// TestAlgorithmID: Validate resolves each algorithm to its number, the
// default to sliding_window's; a policy not validated gets its Algorithm's
// number; a changed copy gets the new one once validated.
func TestAlgorithmID(t *testing.T) {
	t.Parallel()
	want := map[limiter.Algorithm]limiter.AlgorithmID{
		"": limiter.SlidingWindowID, limiter.SlidingWindow: limiter.SlidingWindowID, limiter.SlidingLog: limiter.SlidingLogID,
		limiter.FixedWindow: limiter.FixedWindowID, limiter.GCRA: limiter.GCRAID,
	}
	seen := map[limiter.AlgorithmID]bool{}
	for alg, id := range want {
		raw := &limiter.Policy{Name: "p", Algorithm: alg, Limit: 10, Window: time.Second}
		if got := raw.AlgorithmID(); got != id {
			t.Errorf("%q not validated: AlgorithmID %d, want %d", alg, got, id)
		}
		p := &limiter.Policy{Name: "p", Algorithm: alg, Limit: 10, Window: time.Second}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := p.AlgorithmID(); got != id || int(got) >= limiter.NumAlgorithms {
			t.Errorf("%q validated: AlgorithmID %d, want %d (< %d)", alg, got, id, limiter.NumAlgorithms)
		}
		seen[id] = true
	}
	if len(seen) != limiter.NumAlgorithms {
		t.Errorf("%d numbers for %d algorithms", len(seen), limiter.NumAlgorithms)
	}
	p := &limiter.Policy{Name: "p", Algorithm: limiter.GCRA, Limit: 10, Window: time.Second}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	c := *p
	c.Algorithm = limiter.SlidingLog
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AlgorithmID() != limiter.SlidingLogID || p.AlgorithmID() != limiter.GCRAID {
		t.Errorf("changed copy: %d, original %d", c.AlgorithmID(), p.AlgorithmID())
	}
	bad := &limiter.Policy{Name: "p", Algorithm: "leaky", Limit: 10, Window: time.Second}
	if bad.Validate() == nil {
		t.Error("an unknown algorithm validates")
	}
}
