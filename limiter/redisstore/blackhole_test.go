package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/internal/faultproxy"
	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// TestCloseOnABlackholedRedis: Close returns within about the store's
// timeout when Redis stops answering while the store's background work is
// on the wire: a clock calibration (which had a second), a busiest-key
// flush (a second, then the last flush) or a batched-mode flush (ten
// timeouts, then ten more for the last flush). The client bounds calls by
// their contexts only (its read timeout is go-redis's default, 3s), as
// the store asks of a client it is given.
func TestCloseOnABlackholedRedis(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		opts redisstore.Options
	}{
		// No local cache: no subscription to resets, so the background
		// work named is the only traffic. No Clock: the store calibrates
		// against TIME, every second while it fails (New's own attempt
		// fails too).
		{"calibration", redisstore.Options{NoLocalCache: true}},
		{"busiest-key flush", redisstore.Options{Clock: time.Now, NoLocalCache: true}},
		{"batched flush", redisstore.Options{Clock: time.Now, NoLocalCache: true, BatchInterval: 20 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fp, client := slowRedis(t)
			o := tc.opts
			o.Timeout, o.BreakerThreshold = timeout, -1
			if o.Clock == nil {
				fp.Pause() // from the start: the store keeps calibrating
			}
			s, err := redisstore.New(client, o)
			if err != nil {
				t.Fatal(err)
			}
			if o.Clock != nil {
				p := limitertest.Policy(t, "close", limiter.SlidingWindow, 100, time.Minute)
				for range 3 {
					limitertest.MustAllow(t, s, p, "k", 1) // something to flush
				}
				fp.Pause()
			}
			held := fp.Held()
			for fp.Held() == held {
				time.Sleep(time.Millisecond) // until the background work is on the wire
			}
			start := time.Now()
			_ = s.Close()
			if took, bound := time.Since(start), timeout*3/2; took > bound {
				t.Fatalf("Close took %v with a %v timeout (want at most %v)", took, timeout, bound)
			}
			fp.Resume()
		})
	}
}

// TestCallsOnABlackholedRedis: every call of the store returns within its
// bound when Redis stops answering, on a client that bounds calls by their
// contexts only: the store timeout, or five of them for a listing and a
// second for a busiest-key flush. A reset's PUBLISH, the busiest-key flush
// that a listing sends first and FlushKeys had no deadline (each pipeline
// of the flush waited for the client's 3s read timeout in turn), and a
// listing waited for the flush loop's own flush.
func TestCallsOnABlackholedRedis(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	fp, client := slowRedis(t)
	s, err := redisstore.New(client, redisstore.Options{Clock: time.Now, Timeout: timeout, BreakerThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var policies []*limiter.Policy
	for _, alg := range []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow, limiter.GCRA} {
		p := limitertest.Policy(t, "blackhole-"+string(alg), alg, 100, time.Minute)
		limitertest.MustAllow(t, s, p, "k", 1) // a view for the busiest-key flush to write
		policies = append(policies, p)
	}
	p := policies[0]
	fp.Pause()
	defer fp.Resume()
	ctx := context.Background()
	listing := 5 * timeout
	for _, tc := range []struct {
		name  string
		bound time.Duration
		call  func() error
	}{
		{"Allow", timeout, func() error { _, err := s.Allow(ctx, p, "k", 1); return err }},
		{"Peek", timeout, func() error { _, err := s.Peek(ctx, p, "k"); return err }},
		{"Refund", timeout, func() error {
			return s.Refund(ctx, p, "k", limiter.Charge{Cost: 1, At: time.Now().UnixNano()})
		}},
		{"Reset", timeout, func() error { return s.Reset(ctx, p, "k") }},
		{"Ping", timeout, func() error { return s.Ping(ctx) }},
		{"Keys", listing, func() error { _, err := s.Keys(ctx, p, 10); return err }},
		{"RankKeys", listing, func() error { _, err := s.RankKeys(ctx, p, 10); return err }},
		// Bounded by a second alone; the Allows before it take a timeout each.
		{"FlushKeys", time.Duration(len(policies))*timeout + time.Second, func() error {
			for _, p := range policies {
				_, _ = s.Allow(context.Background(), p, "k2", 1) // fails, but the busiest-key summaries count it
			}
			start := time.Now()
			err := s.FlushKeys(ctx)
			if took := time.Since(start); took > time.Second*3/2 {
				return fmt.Errorf("FlushKeys alone took %v: %v", took, err)
			}
			return err
		}},
		{"counter Add", timeout, func() error { _, err := s.Counters().Add(ctx, "c", 1); return err }},
		{"counter Get", timeout, func() error { _, err := s.Counters().Get(ctx, "c"); return err }},
		{"counter List", listing, func() error { _, err := s.Counters().List(ctx); return err }},
		{"SetOverride", timeout, func() error { return s.SetOverride(ctx, p.Name, "k", 5) }},
		{"ListOverrides", timeout, func() error { _, err := s.ListOverrides(ctx, p.Name); return err }},
	} {
		start := time.Now()
		err := tc.call()
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s succeeded against a paused Redis", tc.name)
		}
		if limit := tc.bound * 3 / 2; took > limit {
			t.Errorf("%s took %v (bound %v, want at most %v): %v", tc.name, took, tc.bound, limit, err)
		}
	}
}

// TestResetWithinTimeoutOnASlowRedis: a reset (DEL, then PUBLISH to the
// fleet) returns within about the store's timeout when Redis answers each
// round trip late but within it. The PUBLISH had no deadline: the two took
// about twice the timeout.
func TestResetWithinTimeoutOnASlowRedis(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	fp, client := slowRedis(t)
	s, err := redisstore.New(client, redisstore.Options{Clock: time.Now, Timeout: timeout, BreakerThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "slow-reset", limiter.SlidingWindow, 100, time.Minute)
	limitertest.MustAllow(t, s, p, "k", 1)
	if err := s.Reset(context.Background(), p, "k"); err != nil { // warm connections for both steps
		t.Fatal(err)
	}
	fp.SetLatency(400 * time.Millisecond) // each way: 800ms a round trip
	defer fp.SetLatency(0)
	start := time.Now()
	err = s.Reset(context.Background(), p, "k")
	if took, bound := time.Since(start), timeout*5/4; took > bound {
		t.Fatalf("Reset took %v with a %v timeout (want at most %v): %v", took, timeout, bound, err)
	}
}

// TestClusterCallsBeforeTheSlotsAreKnown: on a cluster that has not
// answered CLUSTER SLOTS yet, a decision still returns within about the
// store's timeout. Finding the key's master (for its breaker) loaded the
// slots with the caller's context, without a deadline: it waited for the
// client's read timeout (3s by default), then the decision's own pipeline
// tried again.
func TestClusterCallsBeforeTheSlotsAreKnown(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	m := miniredis.RunT(t)
	fp, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	fp.Pause()
	defer fp.Resume()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{fp.Addr()}, MaxRedirects: -1, Protocol: 2, ContextTimeoutEnabled: true})
	defer client.Close()
	s, err := redisstore.New(client, redisstore.Options{Clock: time.Now, Timeout: timeout, NoLocalCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "cluster-blackhole", limiter.SlidingWindow, 100, time.Minute)
	for i := range 3 { // under the breaker's threshold: each call goes to Redis
		start := time.Now()
		_, err := s.Allow(context.Background(), p, "k", 1)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("call %d succeeded against a paused cluster", i)
		}
		if bound := timeout * 3 / 2; took > bound {
			t.Fatalf("call %d took %v with a %v timeout (want at most %v): %v", i, took, timeout, bound, err)
		}
	}
}

// slowRedis starts a miniredis behind a fault proxy and returns the proxy
// and a client of it that bounds calls by their contexts only (its read
// timeout is go-redis's default, 3s), as the store asks of a client it is
// given; both are closed when the test ends.
func slowRedis(t *testing.T) (*faultproxy.Proxy, *redis.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	fp, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fp.Close)
	client := redis.NewClient(&redis.Options{Addr: fp.Addr(), MaxRetries: -1, Protocol: 2, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	return fp, client
}
