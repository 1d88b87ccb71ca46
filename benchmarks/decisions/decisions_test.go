// Package decisions compares one rate-limit decision of Sluice's stores with
// peer libraries on the same real Redis and in memory:
//
//	cd benchmarks && SLUICE_TEST_REDIS=127.0.0.1:6379 go test ./decisions -run '^$' -bench . -benchtime 20000x
//
// Every sub-benchmark reports decisions/s; the Redis ones also report the
// Redis server's CPU time per decision (from INFO cpu deltas), which decides
// how many gateways one Redis can serve. "p1" runs one caller, "p64" 64
// concurrent callers.
package decisions

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	sethmem "github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	throttledredis "github.com/throttled/throttled/v2/store/goredisstore.v9"
	ulule "github.com/ulule/limiter/v3"
	ulmem "github.com/ulule/limiter/v3/drivers/store/memory"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"
	"golang.org/x/time/rate"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// decide makes one decision for key; the limits are high enough that
// nearly every decision admits, which is the path a gateway pays for.
type decide func(ctx context.Context, key string) error

const (
	limit  = 1 << 30
	window = time.Minute
)

var keys = func() []string {
	k := make([]string, 4096)
	for i := range k {
		k[i] = "198.51.100." + strconv.Itoa(i)
	}
	return k
}()

func redisAddr(b *testing.B) string {
	addr := os.Getenv("SLUICE_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		b.Skipf("no Redis at %s: %v", addr, err)
	}
	return addr
}

// redisCPU returns the server's used CPU time so far.
func redisCPU(b *testing.B, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// run measures fn at parallelism 1 and 64.
func run(b *testing.B, name string, fn decide, stats *redis.Client) {
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("%s/p%d", name, par), func(b *testing.B) {
			ctx := context.Background()
			var cpu0 time.Duration
			if stats != nil {
				cpu0 = redisCPU(b, stats)
			}
			b.ReportAllocs()
			start := time.Now()
			if par == 1 {
				i := 0
				for b.Loop() {
					if err := fn(ctx, keys[i%len(keys)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			} else {
				var wg sync.WaitGroup
				per := (b.N + par - 1) / par
				b.ResetTimer()
				start = time.Now()
				for w := range par {
					wg.Go(func() {
						for i := range per {
							if err := fn(ctx, keys[(w*per+i)%len(keys)]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
			if stats != nil {
				b.ReportMetric(float64(redisCPU(b, stats)-cpu0)/float64(time.Microsecond)/float64(b.N), "redis-µs/decision")
			}
		})
	}
}

func BenchmarkRedis(b *testing.B) {
	addr := redisAddr(b)
	stats := redis.NewClient(&redis.Options{Addr: addr})
	defer stats.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64, MaxRetries: -1, Protocol: 2})
	defer client.Close()
	prefix := fmt.Sprintf("bench:%d:", time.Now().UnixNano())

	for _, alg := range []limiter.Algorithm{limiter.SlidingWindow, limiter.FixedWindow, limiter.SlidingLog, limiter.GCRA} {
		s, err := redisstore.New(client, redisstore.Options{Prefix: prefix, Timeout: time.Second, PoolSize: 64})
		if err != nil {
			b.Fatal(err)
		}
		w := window
		if alg == limiter.SlidingLog {
			w = 2 * time.Second // a log holds every admission of its window
		}
		l := int64(limit)
		if alg == limiter.GCRA {
			l = 1 << 24 // one unit per 3.6µs: gcra needs at least 1µs
		}
		p := &limiter.Policy{Name: "bench", Algorithm: alg, Limit: l, Window: w}
		if err := p.Validate(); err != nil {
			b.Fatal(err)
		}
		run(b, "sluice-"+string(alg), func(ctx context.Context, key string) error {
			_, err := s.Allow(ctx, p, key, 1)
			return err
		}, stats)
		s.Close()

		// Every decision a rejection that reaches Redis (no local cache of
		// rejected keys): the most a decision costs (two round trips for
		// the plain-command algorithms, one for gcra).
		rs, err := redisstore.New(client, redisstore.Options{Prefix: prefix, Timeout: time.Second, PoolSize: 64, NoLocalCache: true})
		if err != nil {
			b.Fatal(err)
		}
		rp := &limiter.Policy{Name: "bench-rejected", Algorithm: alg, Limit: 1, Window: time.Hour}
		if err := rp.Validate(); err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			if _, err := rs.Allow(context.Background(), rp, k, 1); err != nil {
				b.Fatal(err)
			}
		}
		run(b, "sluice-"+string(alg)+"-rejected", func(ctx context.Context, key string) error {
			_, err := rs.Allow(ctx, rp, key, 1)
			return err
		}, stats)
		rs.Close()
	}

	rr := redis_rate.NewLimiter(client)
	rrLimit := redis_rate.Limit{Rate: limit, Burst: limit, Period: window}
	run(b, "redis_rate", func(ctx context.Context, key string) error {
		_, err := rr.Allow(ctx, prefix+key, rrLimit)
		return err
	}, stats)

	ustore, err := ulredis.NewStoreWithOptions(client, ulule.StoreOptions{Prefix: prefix + "ulule", MaxRetry: 3})
	if err != nil {
		b.Fatal(err)
	}
	ul := ulule.New(ustore, ulule.Rate{Period: window, Limit: limit})
	run(b, "ulule-redis", func(ctx context.Context, key string) error {
		_, err := ul.Get(ctx, key)
		return err
	}, stats)

	tstore, err := throttledredis.NewCtx(client, prefix+"throttled:")
	if err != nil {
		b.Fatal(err)
	}
	tl, err := throttled.NewGCRARateLimiterCtx(tstore, throttled.RateQuota{MaxRate: throttled.PerMin(1 << 20), MaxBurst: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	run(b, "throttled-redis", func(ctx context.Context, key string) error {
		_, _, err := tl.RateLimitCtx(ctx, key, 1)
		return err
	}, stats)

	b.Cleanup(func() {
		ctx := context.Background()
		for _, pattern := range []string{prefix + "*", "rate:" + prefix + "*"} {
			iter := stats.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				stats.Del(ctx, iter.Val())
			}
		}
	})
}

func BenchmarkMemory(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	p := &limiter.Policy{Name: "bench", Limit: limit, Window: window}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	run(b, "sluice-memstore", func(ctx context.Context, key string) error {
		_, err := s.Allow(ctx, p, key, 1)
		return err
	}, nil)

	sm, err := sethmem.New(&sethmem.Config{Tokens: limit, Interval: window})
	if err != nil {
		b.Fatal(err)
	}
	defer sm.Close(context.Background())
	run(b, "sethvargo-memorystore", func(ctx context.Context, key string) error {
		_, _, _, _, err := sm.Take(ctx, key)
		return err
	}, nil)

	ul := ulule.New(ulmem.NewStore(), ulule.Rate{Period: window, Limit: limit})
	run(b, "ulule-memory", func(ctx context.Context, key string) error {
		_, err := ul.Get(ctx, key)
		return err
	}, nil)

	var mu sync.Mutex
	limiters := map[string]*rate.Limiter{}
	run(b, "x-time-rate-map", func(ctx context.Context, key string) error {
		mu.Lock()
		l := limiters[key]
		if l == nil {
			l = rate.NewLimiter(rate.Every(window/limit), limit)
			limiters[key] = l
		}
		mu.Unlock()
		l.Allow()
		return nil
	}, nil)
}
