package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// TestWindowCloseDuringTrims: Close while decisions that trim run.
func TestWindowCloseDuringTrims(t *testing.T) {
	for range 20 {
		w := newMiniWindow(t, "cl:", 1_000_000, redisstore.Options{NoLocalCache: true})
		m, s, clock, p, hash := w.m, w.s, w.clock, w.p, w.hash
		c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
		for i := range 100 {
			m.HSet(hash, strconv.FormatInt(c-100-int64(i), 10), "1")
		}
		var wg, started sync.WaitGroup
		for range 8 {
			started.Add(1)
			wg.Go(func() {
				for i := range 200 {
					_, _ = s.Allow(context.Background(), p, "k", 1)
					clock.Advance(p.BucketSize()) // a trim every other bucket
					if i == 20 {
						started.Done()
					}
				}
			})
		}
		started.Wait()
		s.Close()
		wg.Wait()
	}
}

// TestWindowIgnoresFieldsFarAhead: a bucket field far ahead of the clock (a Redis
// clock that stepped forward then back, or a hand-made field) locks the
// key out for as long as it stays ahead; the old HMGET c-k..c+1 ignored it.
func TestWindowIgnoresFieldsFarAhead(t *testing.T) {
	w := newMiniWindow(t, "fut:", 10, redisstore.Options{NoLocalCache: true})
	m, s, clock, p, hash := w.m, w.s, w.clock, w.p, w.hash
	c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
	// An hour of 100ms buckets ahead.
	m.HSet(hash, strconv.FormatInt(c+36000, 10), "10")
	clock.Advance(p.Window * 2)
	m.SetTime(clock.Now())
	d := limitertest.MustAllow(t, s, p, "k", 1)
	if !d.Allowed {
		t.Fatalf("a fresh window with a field 3600s ahead: rejected (count %d, reset %v)", d.Count, d.ResetAfter)
	}
}

// TestWindowHugeCounts: buckets whose sum overflows int64 must not admit.
func TestWindowHugeCounts(t *testing.T) {
	w := newMiniWindow(t, "huge:", 10, redisstore.Options{NoLocalCache: true})
	m, s, clock, p, hash := w.m, w.s, w.clock, w.p, w.hash
	c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
	m.HSet(hash, strconv.FormatInt(c-1, 10), strconv.FormatInt(1<<62, 10))
	m.HSet(hash, strconv.FormatInt(c-2, 10), strconv.FormatInt(1<<62, 10))
	if d := limitertest.MustAllow(t, s, p, "k", 1); d.Allowed {
		t.Fatalf("2^63 units in the window: admitted (count %d)", d.Count)
	}
}

// miniWindow is a sliding_window key on a miniredis whose clock and the
// store's both start at limitertest.Start: the key "k" of policy p took one
// request, and hash is its Redis hash.
type miniWindow struct {
	m     *miniredis.Miniredis
	s     *redisstore.Store
	clock *limitertest.Clock
	p     *limiter.Policy
	hash  string
}

// newMiniWindow makes a miniWindow whose store has opts (its address,
// clock, prefix and timeout set here) and whose policy, named after the
// prefix, admits limit requests a second. The store is closed when the
// test ends (closing it earlier is fine).
func newMiniWindow(t *testing.T, prefix string, limit int64, opts redisstore.Options) miniWindow {
	t.Helper()
	w := miniWindow{m: miniredis.RunT(t), clock: limitertest.NewClock(limitertest.Start)}
	w.m.SetTime(limitertest.Start)
	opts.Addrs, opts.Clock, opts.Prefix, opts.Timeout = []string{w.m.Addr()}, w.clock.Now, prefix, 5*time.Second
	s, err := redisstore.New(nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w.s = s
	w.p = limitertest.Policy(t, strings.TrimSuffix(prefix, ":"), limiter.SlidingWindow, limit, time.Second)
	limitertest.MustAllow(t, s, w.p, "k", 1)
	for _, k := range w.m.Keys() {
		if strings.HasPrefix(k, prefix+"sw:") && !strings.Contains(k, ":rej") {
			w.hash = k
		}
	}
	if w.hash == "" {
		t.Fatalf("no sliding_window hash among %q", w.m.Keys())
	}
	return w
}
