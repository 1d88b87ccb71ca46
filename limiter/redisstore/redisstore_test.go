package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "sluicetest:" + hex.EncodeToString(b[:]) + ":"
}

// isLimiterKey reports whether a key belongs to a limiter (not to the
// listing index or to named counters).
func isLimiterKey(prefix, k string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(k, "rate:"), prefix)
	return !strings.HasPrefix(rest, "idx:") && !strings.HasPrefix(rest, "counter")
}

// countHook counts the commands a client sends, pipelined ones included.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestMiniredis(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(t *testing.T) *limitertest.Harness {
		m := miniredis.RunT(t)
		m.SetTime(limitertest.Start)
		clock := limitertest.NewClock(limitertest.Start)
		newStore := func(t *testing.T) *redisstore.Store {
			client := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, Protocol: 2})
			t.Cleanup(func() { client.Close() })
			s, err := redisstore.New(client, redisstore.Options{Clock: clock.Now, Timeout: 5 * time.Second, TopK: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return &limitertest.Harness{
			Store: newStore(t),
			Peer:  func(t *testing.T) limiter.Store { return newStore(t) },
			TopK:  8,
			// No Commands: miniredis's PFCOUNT cannot read a dense sketch
			// written with SET, so its listings take more commands.
			Advance: func(d time.Duration) {
				clock.Advance(d)
				m.SetTime(clock.Now())
				m.FastForward(d)
			},
			GCRAFollowsAdvance:   true,
			RecordsFollowAdvance: true,
			Now:                  clock.Now,
			Expired: func(t *testing.T) bool {
				for _, k := range m.Keys() {
					if isLimiterKey(redisstore.DefaultPrefix, k) {
						t.Logf("key %q is still there", k)
						return false
					}
				}
				return true
			},
			AllKeysHaveTTL: func(t *testing.T) {
				for _, k := range m.Keys() {
					if isLimiterKey(redisstore.DefaultPrefix, k) && m.TTL(k) <= 0 {
						t.Errorf("key %q has no TTL", k)
					}
				}
			},
		}
	})
}

// realHarness runs the suite on a real server or cluster. Stores use a fake
// clock that starts now; a fresh prefix isolates each subtest.
func realHarness(t *testing.T, client redis.UniversalClient, newClient func() redis.UniversalClient, commands *atomic.Int64) *limitertest.Harness {
	prefix := randomPrefix()
	clock := limitertest.NewClock(time.Now().Truncate(time.Hour)) // fixed windows start with the test
	opts := redisstore.Options{Clock: clock.Now, Prefix: prefix, Timeout: 2 * time.Second, TopK: 8}
	s, err := redisstore.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	peer := func(t *testing.T) limiter.Store {
		c := newClient()
		ps, err := redisstore.New(c, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ps.Close(); c.Close() })
		return ps
	}
	// scan calls fn for every key of this harness, one call at a time
	// (ForEachMaster runs the masters concurrently).
	var scanMu sync.Mutex
	scan := func(fn func(ctx context.Context, c *redis.Client, key string)) {
		ctx := context.Background()
		each := func(ctx context.Context, c *redis.Client) error {
			for _, pattern := range []string{prefix + "*", "rate:" + prefix + "*"} {
				iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
				for iter.Next(ctx) {
					scanMu.Lock()
					fn(ctx, c, iter.Val())
					scanMu.Unlock()
				}
				if err := iter.Err(); err != nil {
					t.Error(err)
				}
			}
			return nil
		}
		switch c := client.(type) {
		case *redis.ClusterClient:
			_ = c.ForEachMaster(ctx, each)
		case *redis.Client:
			_ = each(ctx, c)
		}
	}
	t.Cleanup(func() {
		s.Close()
		scan(func(ctx context.Context, c *redis.Client, key string) { c.Del(ctx, key) })
	})
	return &limitertest.Harness{
		Store:    s,
		Advance:  clock.Advance,
		Now:      clock.Now,
		Peer:     peer,
		TopK:     8,
		Commands: commands.Load,
		AllKeysHaveTTL: func(t *testing.T) {
			n := 0
			scan(func(ctx context.Context, c *redis.Client, key string) {
				n++
				if ttl := c.PTTL(ctx, key).Val(); isLimiterKey(prefix, key) && ttl <= 0 {
					t.Errorf("key %q has TTL %v", key, ttl)
				}
			})
			if n == 0 {
				t.Error("no keys found to check")
			}
		},
	}
}

func TestRealRedis(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	newClient := func() redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2})
	}
	var commands atomic.Int64
	client := newClient()
	client.AddHook(countHook{&commands})
	t.Cleanup(func() { client.Close() })
	limitertest.Run(t, func(t *testing.T) *limitertest.Harness { return realHarness(t, client, newClient, &commands) })
}

func TestRealCluster(t *testing.T) {
	t.Parallel()
	addrs := limitertest.ClusterAddrs(t)
	newClient := func() redis.UniversalClient {
		c, err := redisstore.NewClient(redisstore.Options{Addrs: addrs, Cluster: true, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := newClient()
	t.Cleanup(func() { client.Close() })
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("cluster: true built a %T, want *redis.ClusterClient", client)
	}
	var commands atomic.Int64
	client.AddHook(countHook{&commands})
	limitertest.Run(t, func(t *testing.T) *limitertest.Harness { return realHarness(t, client, newClient, &commands) })
}

// TestServerClock checks that a store without an injected clock takes its
// time from the server: miniredis's TIME is set ten minutes ahead.
func TestServerClock(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	ahead := time.Now().Add(10 * time.Minute)
	m.SetTime(ahead)
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "clock", "fixed_window", 3, time.Hour)
	d := limitertest.MustAllow(t, s, p, "k", 1)
	// The fixed window ends at the next whole hour of the server's clock.
	want := ahead.Truncate(time.Hour).Add(time.Hour).Sub(ahead)
	if diff := d.ResetAfter - want; diff < -time.Second || diff > time.Second {
		t.Fatalf("reset after %v, want about %v (server time)", d.ResetAfter, want)
	}
}

func TestNewRejectsBraceInPrefix(t *testing.T) {
	t.Parallel()
	if _, err := redisstore.New(nil, redisstore.Options{Addrs: []string{"127.0.0.1:1"}, Prefix: "a{b"}); err == nil {
		t.Fatal("prefix with '{': no error")
	}
}

func TestDownStoreErrorsWithinTimeout(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	addr := m.Addr()
	m.Close()
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{addr}, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "down", "sliding_window", 3, time.Minute)
	if _, err := s.Allow(context.Background(), p, "k", 1); err == nil {
		t.Fatal("Allow on a stopped server: no error")
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping on a stopped server: no error")
	}
}

// TestIdempotencyRecordTTL: a record lives beside its counter, in its hash
// slot, for limiter.IdempotencyTTL.
func TestIdempotencyRecordTTL(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	// A long timeout: this test is about TTLs, and a loaded machine running
	// -race can take longer than the default to answer.
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := s.Counters().(limiter.CounterWriter)
	limitertest.MustWrite(t, w, limiter.CounterOp{Kind: limiter.OpAdd, Name: "jobs", Delta: 1}, "k-1")
	key := redisstore.DefaultPrefix + "idem:{jobs}:k-1"
	if ttl := m.TTL(key); ttl != limiter.IdempotencyTTL {
		t.Fatalf("TTL of %s: %v, want %v (keys: %v)", key, ttl, limiter.IdempotencyTTL, m.Keys())
	}
	if ttl := m.TTL(redisstore.DefaultPrefix + "counter:{jobs}"); ttl != 0 {
		t.Fatalf("the counter has a TTL: %v", ttl)
	}
}
