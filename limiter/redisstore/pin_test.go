package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// killClients closes every normal client connection of the server at port
// but admin's own, as a server timeout, a restart or a middlebox would.
func killClients(t *testing.T, admin *redis.Client) {
	t.Helper()
	if err := admin.ClientKillByFilter(context.Background(), "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
}

// TestPinnedConnectionClosedWhileIdle: connections closed by the server
// while the store was idle cost no decision: an idle pinned connection
// goes back to the pool, which checks it before use.
func TestPinnedConnectionClosedWhileIdle(t *testing.T) {
	t.Parallel()
	port := startRedis(t)
	clock := limitertest.NewClock(time.Now())
	s, err := redisstore.New(nil, redisstore.Options{Addrs: addrOf(port), Clock: clock.Now, Timeout: 2 * time.Second, BreakerThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { admin.Close() })
	for _, alg := range []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog} { // commands, and a script
		p := limitertest.Policy(t, "pin-"+string(alg), alg, 100, time.Minute)
		for round := range 3 {
			for range 2 {
				limitertest.MustAllow(t, s, p, "k", 1)
			}
			killClients(t, admin)
			clock.Advance(2 * time.Second)
			limitertest.MustAllow(t, s, p, "k", 1) // fails if a dead pinned connection is used
			if u := limitertest.MustPeek(t, s, p, "k"); u.Count != int64(3*(round+1)) {
				t.Fatalf("%s round %d: count %d, want %d", alg, round, u.Count, 3*(round+1))
			}
		}
	}
}

// TestPinnedConnectionClosedWhileBusy: connections closed while the store is
// busy cost at most one failed flush, never a failure for good: the broken
// pinned connection and the other idle ones are dropped.
func TestPinnedConnectionClosedWhileBusy(t *testing.T) {
	t.Parallel()
	port := startRedis(t)
	clock := limitertest.NewClock(time.Now()) // never advanced: nothing counts as idle
	s, err := redisstore.New(nil, redisstore.Options{Addrs: addrOf(port), Clock: clock.Now, Timeout: 2 * time.Second, BreakerThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { admin.Close() })
	p := limitertest.Policy(t, "pin-busy", limiter.SlidingWindow, 1000, time.Minute)
	// Two pinned connections: two calls at once, twice over.
	for range 2 {
		done := make(chan error, 2)
		for range 2 {
			go func() { _, err := s.Allow(context.Background(), p, "warm", 1); done <- err }()
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range 3 {
		killClients(t, admin)
		_, _ = s.Allow(context.Background(), p, "k", 1) // may fail
		for i := range 3 {
			if _, err := s.Allow(context.Background(), p, "k", 1); err != nil {
				t.Fatalf("round %d call %d after the kill: %v (only the first may fail)", round, i+2, err)
			}
		}
	}
}

// TestPinnedConnectionsSpareASmallPool: a pool no larger than the flushes
// in flight is not pinned: its connections serve the other commands too
// (Ping for /readyz, trims, top keys), idle or busy. With a pool of two,
// both pinned by two calls at once, Ping waited for the pool's timeout.
func TestPinnedConnectionsSpareASmallPool(t *testing.T) {
	t.Parallel()
	port := startRedis(t)
	clock := limitertest.NewClock(time.Now())
	s, err := redisstore.New(nil, redisstore.Options{Addrs: addrOf(port), Clock: clock.Now, Timeout: 300 * time.Millisecond, PoolSize: 2, BreakerThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := limitertest.Policy(t, "pin-small", limiter.SlidingWindow, 1000, time.Minute)
	for round := range 5 {
		done := make(chan error, 2)
		for range 2 {
			go func() { _, err := s.Allow(context.Background(), p, "k", 1); done <- err }()
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("round %d: Ping after two calls at once: %v", round, err)
		}
	}
}
