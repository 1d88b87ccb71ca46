// Package limitertest is the conformance suite that every limiter.Store must
// pass: one table of behaviours, run against the memory store, miniredis, a
// real Redis and a real Redis Cluster alike.
//
// Time moves through the harness's Advance, never by sleeping.
package limitertest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// Clock is a manual clock for stores that take an injectable one. It is safe
// for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Harness is one store under test.
type Harness struct {
	Store limiter.Store
	// Advance moves the store's time forward by d, and its key expiry where
	// the store can (miniredis FastForward).
	Advance func(d time.Duration)
	// GCRAFollowsAdvance is false where gcra reads a clock that Advance
	// cannot move (a real Redis server's TIME).
	GCRAFollowsAdvance bool
	// Expired reports whether no state is left for the store after every key
	// went idle past its window (the harness sweeps or fast-forwards first).
	// Nil skips that check.
	Expired func(t *testing.T) bool
	// AllKeysHaveTTL checks that every limiter key the store wrote expires.
	// Nil skips that check.
	AllKeysHaveTTL func(t *testing.T)
	// Now returns the store's time; nil skips the history test.
	Now func() time.Time
	// RecordsFollowAdvance is true where Advance also ages idempotency
	// records (a real Redis server's TTLs it cannot move).
	RecordsFollowAdvance bool
	// Stall makes the store's server hang (it holds every byte) until the
	// returned function is called. Nil skips the tests of calls pending on
	// a hung server.
	Stall func() (resume func())
	// Peer returns another Store on the same backend, as another process of
	// a fleet would have it: its own client and summaries, the same prefix
	// and clock, the same TopK. Nil skips the fleet cases.
	Peer func(t *testing.T) limiter.Store
	// TopK is the K the harness's stores were built with (TopK option);
	// zero means topk.DefaultK.
	TopK int
	// Commands returns how many Redis commands the harness's stores have
	// sent so far; nil skips the command-count case.
	Commands func() int64
}

// Start is a time at which the test clocks start: aligned to a whole hour so
// that fixed windows start with the test.
var Start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

var algorithms = []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow, limiter.GCRA}

// Policy returns a validated policy, failing the test when it is invalid.
func Policy(t testing.TB, name string, alg limiter.Algorithm, limit int64, window time.Duration) *limiter.Policy {
	t.Helper()
	p := &limiter.Policy{Name: name, Algorithm: alg, Limit: limit, Window: window}
	if err := p.Validate(); err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// MustAllow calls Allow and fails the test on error.
func MustAllow(t testing.TB, s limiter.Store, p *limiter.Policy, key string, cost int64) limiter.Decision {
	t.Helper()
	d, err := s.Allow(context.Background(), p, key, cost)
	if err != nil {
		t.Fatalf("Allow(%s, %q): %v", p.Name, key, err)
	}
	return d
}

// MustPeek calls Peek and fails the test on error.
func MustPeek(t testing.TB, s limiter.Store, p *limiter.Policy, key string) limiter.Usage {
	t.Helper()
	u, err := s.Peek(context.Background(), p, key)
	if err != nil {
		t.Fatalf("Peek(%s, %q): %v", p.Name, key, err)
	}
	return u
}

func admitted(t *testing.T, s limiter.Store, p *limiter.Policy, key string, n int) int {
	t.Helper()
	got := 0
	for range n {
		if MustAllow(t, s, p, key, 1).Allowed {
			got++
		}
	}
	return got
}

// Run runs the whole suite; newHarness is called once per subtest and must
// return a store with no state.
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Run("ExactAtLimit", func(t *testing.T) { testExactAtLimit(t, newHarness(t), alg) })
			t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newHarness(t), alg) })
			t.Run("RetryAfter", func(t *testing.T) { testRetryAfter(t, newHarness(t), alg) })
			t.Run("Overrides", func(t *testing.T) { testOverrides(t, newHarness(t), alg) })
			t.Run("ResetAndPeek", func(t *testing.T) { testResetAndPeek(t, newHarness(t), alg) })
			t.Run("Cost", func(t *testing.T) { testCost(t, newHarness(t), alg) })
			t.Run("OddKeys", func(t *testing.T) { testOddKeys(t, newHarness(t), alg) })
			t.Run("Refund", func(t *testing.T) { testRefund(t, newHarness(t), alg) })
			t.Run("Expiry", func(t *testing.T) { testExpiry(t, newHarness(t), alg) })
			t.Run("Cancel", func(t *testing.T) { testCancel(t, newHarness(t), alg) })
		})
	}
	t.Run("WindowBoundaries", func(t *testing.T) { testWindowBoundaries(t, newHarness(t)) })
	t.Run("Calendar", func(t *testing.T) { testCalendar(t, newHarness(t)) })
	t.Run("RuntimeOverrides", func(t *testing.T) { testRuntimeOverrides(t, newHarness(t)) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, newHarness(t)) })
	t.Run("KeysFleet", func(t *testing.T) { testKeysFleet(t, newHarness(t)) })
	t.Run("KeysGuarantee", func(t *testing.T) { testKeysGuarantee(t, newHarness(t)) })
	t.Run("KeysCommands", func(t *testing.T) { testKeysCommands(t, newHarness(t)) })
	t.Run("Counters", func(t *testing.T) { testCounters(t, newHarness(t)) })
	t.Run("CountersConcurrent", func(t *testing.T) { testCountersConcurrent(t, newHarness(t)) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, newHarness(t)) })
	t.Run("IdempotencyConcurrent", func(t *testing.T) { testIdempotencyConcurrent(t, newHarness(t)) })
	t.Run("CheckSeveralPolicies", func(t *testing.T) { testCheck(t, newHarness(t)) })
	t.Run("History", func(t *testing.T) { testHistory(t, newHarness(t)) })
}

func testExactAtLimit(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := Policy(t, "exact", alg, 5, time.Hour)
	for i := range int64(5) {
		d := MustAllow(t, h.Store, p, "k", 1)
		if !d.Allowed {
			t.Fatalf("request %d rejected, want allowed", i+1)
		}
		if d.Limit != 5 || d.Remaining != 4-i {
			t.Fatalf("request %d: limit %d remaining %d, want 5 and %d", i+1, d.Limit, d.Remaining, 4-i)
		}
		if d.Count != i+1 {
			t.Fatalf("request %d: count %d, want %d", i+1, d.Count, i+1)
		}
	}
	for i := range 3 {
		d := MustAllow(t, h.Store, p, "k", 1)
		if d.Allowed {
			t.Fatalf("request %d over the limit allowed", 6+i)
		}
		if d.Remaining != 0 || d.RetryAfter <= 0 {
			t.Fatalf("rejected: remaining %d retry %v, want 0 and > 0", d.Remaining, d.RetryAfter)
		}
	}
	u := MustPeek(t, h.Store, p, "k")
	if u.Count != 5 || u.Rejected != 3 || u.Remaining != 0 || u.Limit != 5 {
		t.Fatalf("peek: got %+v, want count 5 rejected 3 remaining 0 limit 5", u)
	}
	if !MustAllow(t, h.Store, p, "other", 1).Allowed {
		t.Fatal("another key was limited by the first")
	}
}

func testConcurrent(t *testing.T, h *Harness, alg limiter.Algorithm) {
	const limit, goroutines, each = 137, 50, 5
	p := Policy(t, "conc", alg, limit, time.Hour)
	var ok atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			for range each {
				d, err := h.Store.Allow(context.Background(), p, "hot", 1)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := ok.Load(); got != limit {
		t.Fatalf("admitted %d of %d concurrent requests, want exactly %d", got, goroutines*each, limit)
	}
	if u := MustPeek(t, h.Store, p, "hot"); u.Rejected != goroutines*each-limit {
		t.Fatalf("rejected %d, want %d", u.Rejected, goroutines*each-limit)
	}
}

// testRetryAfter: waiting RetryAfter is enough, and a millisecond less is not.
func testRetryAfter(t *testing.T, h *Harness, alg limiter.Algorithm) {
	if alg == limiter.GCRA && !h.GCRAFollowsAdvance {
		t.Skip("gcra reads the Redis server's TIME, which this harness cannot move")
	}
	p := Policy(t, "retry", alg, 4, 10*time.Second)
	h.Advance(1500 * time.Millisecond)
	var d limiter.Decision
	for i := 0; ; i++ {
		if d = MustAllow(t, h.Store, p, "k", 1); !d.Allowed {
			break
		}
		if i == 20 {
			t.Fatal("20 requests at 700ms intervals under 4 per 10s were all allowed")
		}
		h.Advance(700 * time.Millisecond)
	}
	if d.RetryAfter <= 0 || d.RetryAfter > p.Window+p.BucketSize() {
		t.Fatalf("retry after %v, want in (0, %v]", d.RetryAfter, p.Window+p.BucketSize())
	}
	wait := d.RetryAfter.Truncate(time.Millisecond)
	if wait < d.RetryAfter {
		wait += time.Millisecond
	}
	if wait > 2*time.Millisecond {
		h.Advance(wait - 2*time.Millisecond)
		if MustAllow(t, h.Store, p, "k", 1).Allowed {
			t.Fatalf("allowed %v before the retry-after of %v", 2*time.Millisecond, d.RetryAfter)
		}
		h.Advance(2 * time.Millisecond)
	} else {
		h.Advance(wait)
	}
	if !MustAllow(t, h.Store, p, "k", 1).Allowed {
		t.Fatalf("rejected after waiting the retry-after of %v", d.RetryAfter)
	}
}

func testOverrides(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := &limiter.Policy{Name: "tiers", Algorithm: alg, Limit: 2, Window: time.Hour, Overrides: map[string]int64{"vip": 7}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := admitted(t, h.Store, p, "vip", 10); got != 7 {
		t.Fatalf("override key admitted %d, want 7", got)
	}
	if got := admitted(t, h.Store, p, "plain", 10); got != 2 {
		t.Fatalf("plain key admitted %d, want 2", got)
	}
	if u := MustPeek(t, h.Store, p, "vip"); u.Limit != 7 {
		t.Fatalf("override limit %d, want 7", u.Limit)
	}
}

func testResetAndPeek(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := Policy(t, "reset", alg, 3, time.Hour)
	if u := MustPeek(t, h.Store, p, "unseen"); u.Count != 0 || u.Remaining != 3 || u.Rejected != 0 {
		t.Fatalf("unseen key: %+v, want count 0 remaining 3", u)
	}
	for range 10 {
		MustPeek(t, h.Store, p, "k")
	}
	if got := admitted(t, h.Store, p, "k", 5); got != 3 {
		t.Fatalf("admitted %d after peeks, want 3 (peek must not count)", got)
	}
	if err := h.Store.Reset(context.Background(), p, "k"); err != nil {
		t.Fatal(err)
	}
	if u := MustPeek(t, h.Store, p, "k"); u.Count != 0 || u.Rejected != 0 {
		t.Fatalf("after reset: %+v, want count 0 rejected 0", u)
	}
	if got := admitted(t, h.Store, p, "k", 5); got != 3 {
		t.Fatalf("admitted %d after reset, want 3", got)
	}
}

func testCost(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := Policy(t, "cost", alg, 10, time.Hour)
	if d := MustAllow(t, h.Store, p, "k", 4); !d.Allowed || d.Remaining != 6 {
		t.Fatalf("cost 4: %+v, want allowed with 6 remaining", d)
	}
	if d := MustAllow(t, h.Store, p, "k", 7); d.Allowed {
		t.Fatal("cost 7 with 6 remaining allowed")
	}
	if d := MustAllow(t, h.Store, p, "k", 6); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("cost 6: %+v, want allowed with 0 remaining", d)
	}
	if d := MustAllow(t, h.Store, p, "big", 11); d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("cost above the limit: %+v, want rejected with a retry-after", d)
	}
	if _, err := h.Store.Allow(context.Background(), p, "k", 0); !errors.Is(err, limiter.ErrInvalidCost) {
		t.Fatalf("cost 0: err %v, want ErrInvalidCost", err)
	}
}

func testOddKeys(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := Policy(t, "odd", alg, 2, time.Hour)
	long := strings.Repeat("x", 10<<10)
	long2 := strings.Repeat("x", 10<<10-1) + "y"
	binary := "\x00\xff{}\r\n\x80 key"
	for _, k := range []string{long, long2, binary, "2001:db8::/64", "a}b{c"} {
		if got := admitted(t, h.Store, p, k, 3); got != 2 {
			t.Fatalf("key %.20q: admitted %d, want 2", k, got)
		}
		if u := MustPeek(t, h.Store, p, k); u.Count != 2 {
			t.Fatalf("key %.20q: count %d, want 2", k, u.Count)
		}
	}
	if u := MustPeek(t, h.Store, p, long); len(u.Key) > limiter.MaxKeyLen {
		t.Fatalf("a 10 KB key is reported as %d bytes, want the hashed form", len(u.Key))
	}
}

func testRefund(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := Policy(t, "refund", alg, 3, time.Hour)
	d := MustAllow(t, h.Store, p, "k", 2)
	if err := h.Store.Refund(context.Background(), p, "k", d.Charge); err != nil {
		t.Fatal(err)
	}
	if got := admitted(t, h.Store, p, "k", 5); got != 3 {
		t.Fatalf("admitted %d after a refund, want 3", got)
	}
	if err := h.Store.Refund(context.Background(), p, "k", limiter.Charge{}); err != nil {
		t.Fatalf("refunding nothing: %v", err)
	}
}

func testExpiry(t *testing.T, h *Harness, alg limiter.Algorithm) {
	if alg == limiter.GCRA && !h.GCRAFollowsAdvance {
		t.Skip("gcra reads the Redis server's TIME, which this harness cannot move")
	}
	p := Policy(t, "idle", alg, 3, time.Minute)
	for i := range 20 {
		MustAllow(t, h.Store, p, fmt.Sprintf("k%d", i), 1)
	}
	MustAllow(t, h.Store, p, "k0", 1)
	MustAllow(t, h.Store, p, "k0", 1)
	MustAllow(t, h.Store, p, "k0", 1) // a rejection, so the rejected count exists too
	if h.AllKeysHaveTTL != nil {
		h.AllKeysHaveTTL(t)
	}
	h.Advance(p.Window + p.BucketSize() + 2*time.Second)
	if u := MustPeek(t, h.Store, p, "k0"); u.Count != 0 {
		t.Fatalf("after the window: count %d, want 0", u.Count)
	}
	if h.Expired != nil && !h.Expired(t) {
		t.Fatal("idle keys were not expired")
	}
	if got := admitted(t, h.Store, p, "k0", 4); got != 3 {
		t.Fatalf("admitted %d after expiry, want 3", got)
	}
}

// testCancel: a call whose context has ended returns the context's error
// and charges nothing; a call pending on a hung server returns promptly
// when its deadline passes, long before the store's own timeout.
func testCancel(t *testing.T, h *Harness, alg limiter.Algorithm) {
	p := Policy(t, "cancel", alg, 3, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 5 {
		d, err := h.Store.Allow(ctx, p, "k", 1)
		if !errors.Is(err, context.Canceled) || d.Allowed {
			t.Fatalf("call %d with a cancelled context: %+v, %v; want context.Canceled", i+1, d, err)
		}
	}
	if u := MustPeek(t, h.Store, p, "k"); u.Count != 0 || u.Rejected != 0 {
		t.Fatalf("after cancelled calls: count %d, rejected %d; want 0, 0", u.Count, u.Rejected)
	}
	if got := admitted(t, h.Store, p, "k", 4); got != 3 {
		t.Fatalf("admitted %d after cancelled calls, want 3", got)
	}
	if _, err := h.Store.Peek(ctx, p, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Peek with a cancelled context: %v, want context.Canceled", err)
	}
	if h.Stall == nil {
		return
	}
	const deadline = 50 * time.Millisecond
	resume := h.Stall()
	ctx, cancel = context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := h.Store.Allow(ctx, p, "pending", 1)
	took := time.Since(start)
	resume()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call pending on a hung server: %v, want context.DeadlineExceeded", err)
	}
	// Generous for a loaded machine, and far below the stores' timeouts.
	if took > deadline+time.Second {
		t.Fatalf("a call pending on a hung server returned after %v with a %v deadline", took, deadline)
	}
}

func testWindowBoundaries(t *testing.T, h *Harness) {
	t.Run("sliding_log", func(t *testing.T) {
		p := Policy(t, "b-log", limiter.SlidingLog, 3, 10*time.Second)
		MustAllow(t, h.Store, p, "k", 1)
		h.Advance(4 * time.Second)
		MustAllow(t, h.Store, p, "k", 2)
		if MustAllow(t, h.Store, p, "k", 1).Allowed {
			t.Fatal("fourth unit allowed")
		}
		h.Advance(6 * time.Second) // the first unit leaves exactly now
		if !MustAllow(t, h.Store, p, "k", 1).Allowed {
			t.Fatal("rejected after the first unit left the window")
		}
		if MustAllow(t, h.Store, p, "k", 1).Allowed {
			t.Fatal("allowed while the other two are still inside")
		}
	})
	t.Run("fixed_window", func(t *testing.T) {
		p := Policy(t, "b-fixed", limiter.FixedWindow, 3, 10*time.Second)
		h.Advance(9 * time.Second) // 1s before a boundary
		if got := admitted(t, h.Store, p, "k", 4); got != 3 {
			t.Fatalf("admitted %d, want 3", got)
		}
		h.Advance(time.Second)
		if got := admitted(t, h.Store, p, "k", 4); got != 3 {
			t.Fatalf("admitted %d in the next window, want 3", got)
		}
	})
	t.Run("sliding_window", func(t *testing.T) {
		// 10 buckets of 1s; the clock sits on a bucket boundary.
		p := Policy(t, "b-sw", limiter.SlidingWindow, 10, 10*time.Second)
		steps := []struct {
			advance time.Duration
			try     int
			want    int
			why     string
		}{
			{0, 12, 10, "a fresh window"},
			// The burst's bucket is half inside: estimate 5, but the 11
			// buckets touching the window may hold at most 10 + 10/10.
			{10*time.Second + 500*time.Millisecond, 10, 1, "the cap on all buckets touching the window"},
			{500 * time.Millisecond, 10, 9, "the burst's bucket has left"},
			{4500 * time.Millisecond, 5, 0, "ten units inside"},
			// Bucket 30 (1 unit) left; bucket 31 (9 units) is 60% inside.
			{5900 * time.Millisecond, 10, 2, "interpolation, capped at 11 touching"},
		}
		for i, st := range steps {
			h.Advance(st.advance)
			if got := admitted(t, h.Store, p, "k", st.try); got != st.want {
				t.Fatalf("step %d (%s): admitted %d, want %d", i, st.why, got, st.want)
			}
		}
	})
}

func testKeys(t *testing.T, h *Harness) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			p := Policy(t, "list-"+string(alg), alg, 100, time.Hour)
			other := Policy(t, "list-other", alg, 100, time.Hour)
			for key, n := range map[string]int{"a": 5, "b": 1, "c": 3, "d\x00/x": 2} {
				for range n {
					MustAllow(t, h.Store, p, key, 1)
				}
			}
			MustAllow(t, h.Store, other, "z", 1)
			list, err := h.Store.Keys(context.Background(), p, 3)
			if err != nil {
				t.Fatal(err)
			}
			got := list.Keys
			want := []limiter.Usage{{Key: "a", Count: 5}, {Key: "c", Count: 3}, {Key: "d\x00/x", Count: 2}}
			if len(got) != len(want) {
				t.Fatalf("Keys: got %d entries %+v, want %d", len(got), got, len(want))
			}
			for i := range want {
				if got[i].Key != want[i].Key || got[i].Count != want[i].Count || got[i].Remaining != 100-want[i].Count {
					t.Fatalf("Keys[%d]: got %+v, want key %q count %d", i, got[i], want[i].Key, want[i].Count)
				}
			}
			if list.ActiveKeys != 4 {
				t.Fatalf("Keys: active_keys %d, want 4", list.ActiveKeys)
			}
			if err := h.Store.Reset(context.Background(), p, "a"); err != nil {
				t.Fatal(err)
			}
			list, err = h.Store.Keys(context.Background(), p, 100)
			if err != nil {
				t.Fatal(err)
			}
			if got = list.Keys; len(got) != 3 || got[0].Key != "c" {
				t.Fatalf("Keys after resetting a: %+v, want c, d, b", got)
			}
			// active_keys counts the keys that sent traffic in the window: a
			// reset keeps a in it, and a used again counts once.
			if list.ActiveKeys != 4 {
				t.Fatalf("Keys after resetting a: active_keys %d, want 4", list.ActiveKeys)
			}
			MustAllow(t, h.Store, p, "a", 1)
			list = MustKeys(t, h.Store, p, 100)
			if list.ActiveKeys != 4 {
				t.Fatalf("Keys after a's first request since its reset: active_keys %d, want 4", list.ActiveKeys)
			}
			var again *limiter.Usage
			for i := range list.Keys {
				if list.Keys[i].Key == "a" {
					again = &list.Keys[i]
				}
			}
			if again == nil {
				t.Fatalf("Keys after a's first request since its reset: %+v, want a listed", list.Keys)
			}
			if want := int64(1); again.Count != want && (alg != limiter.GCRA || again.Count != want+1) {
				// (gcra's count is its backlog rounded up: see testKeysFleet.)
				t.Fatalf("a after its reset: count %d, want %d", again.Count, want)
			}
		})
	}
}

func ptr(v int64) *int64 { return &v }

func testCounters(t *testing.T, h *Harness) {
	ctx := context.Background()
	c := h.Store.Counters()
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, limiter.ErrNotFound) {
		t.Fatalf("Get(missing): err %v, want ErrNotFound", err)
	}
	v, err := c.Add(ctx, "hits", 3)
	if err != nil || v.Value != 3 {
		t.Fatalf("Add to a missing counter: %+v %v, want 3", v, err)
	}
	if v, err = c.Add(ctx, "hits", -5); err != nil || v.Value != -2 {
		t.Fatalf("Add -5: %+v %v, want -2", v, err)
	}
	if _, err := c.Set(ctx, limiter.Counter{Name: "bad", Value: 11, Max: ptr(10)}); err == nil {
		t.Fatal("Set with value above max: no error")
	}
	if _, err := c.Set(ctx, limiter.Counter{Name: "bad", Value: 0, Min: ptr(5), Max: ptr(1)}); err == nil {
		t.Fatal("Set with min > max: no error")
	}
	if _, err := c.Get(ctx, "bad"); !errors.Is(err, limiter.ErrNotFound) {
		t.Fatal("a rejected Set created the counter")
	}
	if _, err := c.Set(ctx, limiter.Counter{Name: "seats", Value: 8, Min: ptr(0), Max: ptr(10)}); err != nil {
		t.Fatal(err)
	}
	if v, err = c.Add(ctx, "seats", 2); err != nil || v.Value != 10 {
		t.Fatalf("Add to max: %+v %v, want 10", v, err)
	}
	_, err = c.Add(ctx, "seats", 1)
	if be, ok := limiter.IsBoundError(err); !ok || be.Bound != "max" || be.Value != 10 {
		t.Fatalf("step past max: err %v, want a BoundError at max with value 10", err)
	}
	_, err = c.Add(ctx, "seats", -11)
	if be, ok := limiter.IsBoundError(err); !ok || be.Bound != "min" || be.Value != 10 {
		t.Fatalf("step past min: err %v, want a BoundError at min with value 10", err)
	}
	if v, _ := c.Get(ctx, "seats"); v.Value != 10 || v.Min == nil || *v.Min != 0 || v.Max == nil || *v.Max != 10 {
		t.Fatalf("after refused steps: %+v, want 10 in [0, 10]", v)
	}
	if _, err := c.Set(ctx, limiter.Counter{Name: "huge", Value: math.MaxInt64 - 1}); err != nil {
		t.Fatal(err)
	}
	if v, err = c.Add(ctx, "huge", 1); err != nil || v.Value != math.MaxInt64 {
		t.Fatalf("Add to MaxInt64: %+v %v", v, err)
	}
	_, err = c.Add(ctx, "huge", 1)
	if be, ok := limiter.IsBoundError(err); !ok || be.Bound != "int64" || be.Value != math.MaxInt64 {
		t.Fatalf("step past int64: err %v, want a BoundError at int64", err)
	}
	if _, err := c.Set(ctx, limiter.Counter{Name: "tiny", Value: math.MinInt64}); err != nil {
		t.Fatal(err)
	}
	if _, err = c.Add(ctx, "tiny", -1); err == nil {
		t.Fatal("step below MinInt64: no error")
	}
	// Bounds near 2^53, where doubles lose integers.
	big := int64(1)<<53 + 1
	if _, err := c.Set(ctx, limiter.Counter{Name: "precise", Value: big - 1, Max: ptr(big)}); err != nil {
		t.Fatal(err)
	}
	if v, err = c.Add(ctx, "precise", 1); err != nil || v.Value != big {
		t.Fatalf("Add to 2^53+1: %+v %v", v, err)
	}
	if _, err = c.Add(ctx, "precise", 1); err == nil {
		t.Fatal("step past a max of 2^53+1: no error")
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range list {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, ","); got != "hits,huge,precise,seats,tiny" {
		t.Fatalf("List: %s, want hits,huge,precise,seats,tiny", got)
	}
	if err := c.Delete(ctx, "hits"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "hits"); !errors.Is(err, limiter.ErrNotFound) {
		t.Fatal("deleted counter still found")
	}
	if err := c.Delete(ctx, "hits"); err != nil {
		t.Fatalf("deleting a missing counter: %v", err)
	}
}

func testCountersConcurrent(t *testing.T, h *Harness) {
	ctx := context.Background()
	c := h.Store.Counters()
	if _, err := c.Set(ctx, limiter.Counter{Name: "capped", Value: 0, Max: ptr(700)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 50 {
		wg.Go(func() {
			for range 20 {
				if _, err := c.Add(ctx, "free", 1); err != nil {
					t.Error(err)
				}
				if _, err := c.Add(ctx, "capped", 1); err != nil {
					if _, ok := limiter.IsBoundError(err); !ok {
						t.Error(err)
					}
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if v, err := c.Get(ctx, "free"); err != nil || v.Value != 1000 {
		t.Fatalf("1000 concurrent increments: %+v %v, want 1000", v, err)
	}
	if v, err := c.Get(ctx, "capped"); err != nil || v.Value != 700 || refused.Load() != 300 {
		t.Fatalf("capped: %+v %v, refused %d; want 700 and 300 refused", v, err, refused.Load())
	}
}

func testCheck(t *testing.T, h *Harness) {
	ctx := context.Background()
	wide := Policy(t, "wide", limiter.SlidingWindow, 10, time.Hour)
	narrow := Policy(t, "narrow", limiter.SlidingLog, 2, time.Hour)
	shadow := Policy(t, "shadow", limiter.FixedWindow, 1, time.Hour)
	shadow.Shadow = true
	reqs := []limiter.Request{{Policy: shadow, Key: "k"}, {Policy: wide, Key: "k"}, {Policy: narrow, Key: "k"}}
	allowed := 0
	for range 5 {
		out, err := limiter.Check(ctx, h.Store, reqs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Allowed {
			allowed++
		} else if out.Rejected != 2 {
			t.Fatalf("rejected by policy %d, want 2 (narrow)", out.Rejected)
		}
	}
	if allowed != 2 {
		t.Fatalf("allowed %d, want 2", allowed)
	}
	if u := MustPeek(t, h.Store, wide, "k"); u.Count != 2 {
		t.Fatalf("wide policy count %d, want 2: rejected requests must be refunded", u.Count)
	}
	if u := MustPeek(t, h.Store, shadow, "k"); u.Count != 1 || u.Rejected != 4 {
		t.Fatalf("shadow policy: %+v, want count 1 rejected 4", u)
	}
}

func testHistory(t *testing.T, h *Harness) {
	hs, ok := h.Store.(limiter.History)
	if !ok || h.Now == nil {
		t.Skip("the store keeps no history, or the harness has no clock")
	}
	ctx := context.Background()
	h.Advance(2 * time.Hour)
	now := h.Now()
	seven := int64(7)
	points := []limiter.Point{
		{Minute: now.Add(-90 * time.Minute), Admitted: 1},
		{Minute: now.Add(-30 * time.Minute), Admitted: 2, Rejected: 1},
		{Minute: now.Add(-30 * time.Minute), Admitted: 3},
		{Minute: now, Rejected: 4, Value: &seven},
	}
	if err := hs.AddHistory(ctx, "policy:p", points); err != nil {
		t.Fatal(err)
	}
	got, err := hs.History(ctx, "policy:p", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Admitted != 5 || got[0].Rejected != 1 || got[1].Rejected != 4 || got[1].Value == nil || *got[1].Value != 7 {
		t.Fatalf("history since an hour ago: %+v, want minutes -30 (5/1) and 0 (0/4, value 7)", got)
	}
	if want := now.Add(-30 * time.Minute).Truncate(time.Minute); !got[0].Minute.Equal(want) {
		t.Fatalf("minute %v, want %v", got[0].Minute, want)
	}
	h.Advance(limiter.HistoryRetention - 20*time.Minute) // the minute at -30 is now past the retention
	got, err = hs.History(ctx, "policy:p", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Rejected != 4 {
		t.Fatalf("23h40m later: %+v, want only the newest minute", got)
	}
	if got, _ := hs.History(ctx, "policy:none", time.Time{}); len(got) != 0 {
		t.Fatalf("an unknown series: %+v", got)
	}
}
