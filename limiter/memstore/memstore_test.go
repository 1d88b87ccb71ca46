package memstore_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

func newHarness(t *testing.T) *limitertest.Harness {
	clock := limitertest.NewClock(limitertest.Start)
	s := memstore.New(memstore.Options{Clock: clock.Now, SweepInterval: -1, TopK: 8})
	t.Cleanup(func() { s.Close() })
	return &limitertest.Harness{
		Store:                s,
		Advance:              clock.Advance,
		Now:                  clock.Now,
		GCRAFollowsAdvance:   true,
		RecordsFollowAdvance: true,
		TopK:                 8,
		Expired: func(t *testing.T) bool {
			s.Sweep()
			return s.Len() == 0
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, newHarness)
}

func TestMaxKeysEvictsIdleFirst(t *testing.T) {
	t.Parallel()
	clock := limitertest.NewClock(limitertest.Start)
	s := memstore.New(memstore.Options{Clock: clock.Now, MaxKeys: 640, SweepInterval: -1})
	defer s.Close()
	p := &limiter.Policy{Name: "p", Limit: 5, Window: 60e9}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := range 100_000 {
		limitertest.MustAllow(t, s, p, fmt.Sprintf("key-%d", i), 1)
	}
	if n := s.Len(); n > 640 {
		t.Fatalf("holds %d keys, want at most 640", n)
	}
	// A key in use survives a flood of new ones far better than chance: it
	// is the most recently seen whenever it is sampled.
	clock.Advance(1)
	for range 5 {
		limitertest.MustAllow(t, s, p, "busy", 1)
	}
	clock.Advance(1)
	for i := range 20 {
		limitertest.MustAllow(t, s, p, fmt.Sprintf("new-%d", i), 1)
	}
	if u := limitertest.MustPeek(t, s, p, "busy"); u.Count != 5 {
		t.Fatalf("busy key count %d after 20 new keys, want 5", u.Count)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMillionKeysStayBounded pushes 1,000,000 distinct keys through a store
// bounded to 10,000.
func TestMillionKeysStayBounded(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Options{MaxKeys: 10_000, SweepInterval: -1})
	defer s.Close()
	p := limitertest.Policy(t, "flood", limiter.SlidingWindow, 5, time.Minute)
	ctx := context.Background()
	key := make([]byte, 0, 32)
	for i := range 1_000_000 {
		key = strconv.AppendInt(append(key[:0], "client-"...), int64(i), 10)
		if _, err := s.Allow(ctx, p, string(key), 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n > 10_000 {
		t.Fatalf("holds %d keys after 1,000,000 distinct ones, max_keys 10,000", n)
	}
}
