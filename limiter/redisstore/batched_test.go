package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

func batchedStores(t *testing.T, n int) ([]*redisstore.Store, *redisstore.Store, *limitertest.Clock) {
	t.Helper()
	m := miniredis.RunT(t)
	m.SetTime(limitertest.Start)
	clock := limitertest.NewClock(limitertest.Start)
	var out []*redisstore.Store
	for range n {
		s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}, Clock: clock.Now, BatchInterval: time.Hour, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	exact, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}, Clock: clock.Now, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exact.Close() })
	return out, exact, clock
}

// TestBatchedSingleProcessIsExact: one process sees all its own
// admissions, so batched mode admits exactly the limit, and a flush makes
// them visible to exact readers.
func TestBatchedSingleProcessIsExact(t *testing.T) {
	t.Parallel()
	stores, exact, _ := batchedStores(t, 1)
	p := limitertest.Policy(t, "batched", limiter.SlidingWindow, 10, time.Minute)
	ok := 0
	for range 15 {
		if limitertest.MustAllow(t, stores[0], p, "k", 1).Allowed {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("admitted %d, want 10", ok)
	}
	if u := limitertest.MustPeek(t, exact, p, "k"); u.Count != 0 {
		t.Fatalf("before the flush Redis holds %d, want 0", u.Count)
	}
	if err := stores[0].Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := limitertest.MustPeek(t, exact, p, "k"); u.Count != 10 || u.Rejected != 5 {
		t.Fatalf("after the flush: %+v, want count 10 rejected 5", u)
	}
	// A refund before the flush takes the admission back locally.
	d := limitertest.MustAllow(t, stores[0], p, "other", 1)
	if err := stores[0].Refund(context.Background(), p, "other", d.Charge); err != nil {
		t.Fatal(err)
	}
	_ = stores[0].Flush(context.Background())
	if u := limitertest.MustPeek(t, exact, p, "other"); u.Count != 0 {
		t.Fatalf("refunded admission reached Redis: count %d", u.Count)
	}
}

// TestBatchedFleetOvershoot measures batched mode's over-admission with 3
// processes, each taking 20 requests per flush interval on one key, and
// holds it to the documented bound: Limit + Limit/Buckets + (N-1)*r*i.
func TestBatchedFleetOvershoot(t *testing.T) {
	t.Parallel()
	const n, perInterval, limit = 3, 20, 100
	stores, exact, clock := batchedStores(t, n)
	p := limitertest.Policy(t, "fleet", limiter.SlidingWindow, limit, time.Minute)
	admitted := 0
	for range 10 { // 10 intervals of 1s, inside one window
		for _, s := range stores {
			for range perInterval {
				if limitertest.MustAllow(t, s, p, "k", 1).Allowed {
					admitted++
				}
			}
		}
		for _, s := range stores {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(time.Second)
	}
	bound := limit + limit/10 + (n-1)*perInterval
	t.Logf("batched mode, %d processes x %d requests per interval: %d admitted in one window (limit %d, bound %d)", n, perInterval, admitted, limit, bound)
	if admitted > bound {
		t.Fatalf("admitted %d, bound %d", admitted, bound)
	}
	if admitted < limit {
		t.Fatalf("admitted %d, fewer than the limit %d", admitted, limit)
	}
	if u := limitertest.MustPeek(t, exact, p, "k"); int(u.Count) != admitted {
		t.Fatalf("Redis holds %d, the processes admitted %d", u.Count, admitted)
	}
}

// loseFlushReplies is a hook that, while on, lets a batched-mode flush's
// pipeline (the one that reads the buckets back with HGETALL) reach Redis
// and then fails it, as a timeout after the write or a connection lost
// before the replies would.
type loseFlushReplies struct{ on *atomic.Bool }

func (h loseFlushReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h loseFlushReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h loseFlushReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if h.on.Load() && slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "hgetall" }) {
			lost := fmt.Errorf("reply lost: %w", io.ErrUnexpectedEOF)
			for _, c := range cmds {
				c.SetErr(lost)
			}
			return lost
		}
		return err
	}
}

// TestBatchedFlushWhoseReplyIsLostCountsOnce: a batched-mode flush that
// Redis applied but whose reply never came (a store timeout while Redis
// stalled, a dropped connection) is sent again by the next flush, and its
// admissions and rejections count once. Adding them again would charge
// them twice, as a retried limiter call would.
func TestBatchedFlushWhoseReplyIsLostCountsOnce(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	m.SetTime(limitertest.Start)
	clock := limitertest.NewClock(limitertest.Start)
	o := redisstore.Options{Addrs: []string{m.Addr()}, Clock: clock.Now, BatchInterval: time.Hour, Timeout: time.Second}
	c, err := redisstore.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var lose atomic.Bool
	c.AddHook(loseFlushReplies{&lose})
	s, err := redisstore.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	o.BatchInterval = 0
	exact, err := redisstore.New(nil, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exact.Close() })
	p := limitertest.Policy(t, "lost", limiter.SlidingWindow, 10, time.Minute)
	ctx := context.Background()
	for range 15 {
		limitertest.MustAllow(t, s, p, "k", 1)
	}
	lose.Store(true)
	if err := s.Flush(ctx); err == nil {
		t.Fatal("a flush whose reply was lost succeeded")
	}
	lose.Store(false)
	// Admissions meanwhile go with a later batch.
	limitertest.MustAllow(t, s, p, "k2", 1)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := limitertest.MustPeek(t, exact, p, "k"); u.Count != 10 || u.Rejected != 5 {
		t.Fatalf("after the lost reply and a flush: count %d rejected %d, want 10 and 5", u.Count, u.Rejected)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := limitertest.MustPeek(t, exact, p, "k"); u.Count != 10 || u.Rejected != 5 {
		t.Fatalf("after one more flush: count %d rejected %d, want 10 and 5", u.Count, u.Rejected)
	}
	if u := limitertest.MustPeek(t, exact, p, "k2"); u.Count != 1 {
		t.Fatalf("k2: count %d, want 1", u.Count)
	}
	// The process's own view agrees: the key is full.
	if d := limitertest.MustAllow(t, s, p, "k", 1); d.Allowed {
		t.Fatalf("admitted past the limit after the flushes: %+v", d)
	}
}
