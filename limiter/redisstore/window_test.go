package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// windowHash returns the name of the one sliding_window hash under prefix.
func windowHash(tb testing.TB, c *redis.Client, prefix string) string {
	tb.Helper()
	keys, err := c.Keys(context.Background(), prefix+"sw:*").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if !strings.HasSuffix(k, ":rej") {
			out = append(out, k)
		}
	}
	if len(out) != 1 {
		tb.Fatalf("sliding_window hashes under %q: %q, want one", prefix, out)
	}
	return out[0]
}

// windowTarget is a Redis to test against with a store whose clock the
// test drives.
type windowTarget struct {
	client  *redis.Client
	store   *redisstore.Store
	prefix  string
	advance func(time.Duration)
}

func windowTargets(tb testing.TB) map[string]func(tb testing.TB) windowTarget {
	targets := map[string]func(tb testing.TB) windowTarget{
		"miniredis": func(tb testing.TB) windowTarget {
			m := miniredis.RunT(tb)
			m.SetTime(limitertest.Start)
			clock := limitertest.NewClock(limitertest.Start)
			c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, Protocol: 2})
			tb.Cleanup(func() { c.Close() })
			prefix := randomPrefix()
			s, err := redisstore.New(c, redisstore.Options{Clock: clock.Now, Prefix: prefix, Timeout: 5 * time.Second})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { s.Close() })
			return windowTarget{c, s, prefix, func(d time.Duration) {
				clock.Advance(d)
				m.SetTime(clock.Now())
				m.FastForward(d)
			}}
		},
	}
	if addr := os.Getenv("SLUICE_TEST_REDIS"); addr != "" {
		// A real server whose keys do not expire while the test drives the
		// store's clock: the trimming alone must keep the hash small.
		targets["redis"] = func(tb testing.TB) windowTarget {
			clock := limitertest.NewClock(time.Now())
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2})
			tb.Cleanup(func() { c.Close() })
			prefix := randomPrefix()
			s, err := redisstore.New(c, redisstore.Options{Clock: clock.Now, Prefix: prefix, Timeout: 5 * time.Second})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() {
				s.Close()
				ctx := context.Background()
				keys, _ := c.Keys(ctx, prefix+"*").Result()
				if len(keys) > 0 {
					c.Del(ctx, keys...)
				}
			})
			return windowTarget{c, s, prefix, clock.Advance}
		}
	}
	return targets
}

// TestWindowHashStaysSmall: a sliding_window key active across 1,000
// bucket intervals, every interval or with gaps of up to a window, keeps
// at most buckets+2 fields in its hash.
func TestWindowHashStaysSmall(t *testing.T) {
	t.Parallel()
	for name, target := range windowTargets(t) {
		for _, pattern := range []string{"every bucket", "gaps"} {
			t.Run(name+"/"+pattern, func(t *testing.T) {
				t.Parallel()
				tg := target(t)
				p := limitertest.Policy(t, "age", limiter.SlidingWindow, 1_000_000, time.Second)
				bucket := p.BucketSize()
				maxFields := int64(p.Buckets + 2)
				var hash string
				for i := range 1000 {
					for range 3 {
						limitertest.MustAllow(t, tg.store, p, "k", 1)
					}
					if hash == "" {
						hash = windowHash(t, tg.client, tg.prefix)
					}
					tg.store.WaitTrims()
					n, err := tg.client.HLen(context.Background(), hash).Result()
					if err != nil {
						t.Fatal(err)
					}
					if n > maxFields {
						fields, _ := tg.client.HKeys(context.Background(), hash).Result()
						t.Fatalf("interval %d: %d fields %v, want at most %d", i, n, fields, maxFields)
					}
					step := bucket
					if pattern == "gaps" {
						// 1 to buckets+1 intervals, and off the bucket edges.
						step = time.Duration(i%(p.Buckets+1)+1)*bucket + time.Duration(i%7)*bucket/7
					}
					tg.advance(step)
				}
				// The window still counts right after all that.
				tg.advance(p.Window * 2)
				if u := limitertest.MustPeek(t, tg.store, p, "k"); u.Count != 0 {
					t.Fatalf("after two idle windows: count %d, want 0", u.Count)
				}
			})
		}
	}
}

// BenchmarkWindowKeyAge measures a sliding_window decision on a key that
// has been active for 0, 1,000 and 10,000 bucket intervals: the cost must
// not grow with the key's age (the hash keeps O(buckets) fields).
func BenchmarkWindowKeyAge(b *testing.B) {
	for name, target := range windowTargets(b) {
		for _, age := range []int{0, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/age=%d", name, age), func(b *testing.B) {
				tg := target(b)
				p := &limiter.Policy{Name: "age", Limit: 1 << 40, Window: time.Second}
				if err := p.Validate(); err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				for range age {
					if _, err := tg.store.Allow(ctx, p, "k", 1); err != nil {
						b.Fatal(err)
					}
					tg.advance(p.BucketSize())
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := tg.store.Allow(ctx, p, "k", 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
