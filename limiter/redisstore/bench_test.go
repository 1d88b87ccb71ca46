package redisstore_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// BenchmarkAllow measures one decision per operation on miniredis and, when
// SLUICE_TEST_REDIS is set, on a real Redis: serial on one key and parallel
// over 1024 keys.
func BenchmarkAllow(b *testing.B) {
	targets := map[string]string{}
	m := miniredis.RunT(b)
	targets["miniredis"] = m.Addr()
	if addr := os.Getenv("SLUICE_TEST_REDIS"); addr != "" {
		targets["redis"] = addr
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	for _, target := range []string{"miniredis", "redis"} {
		addr, ok := targets[target]
		if !ok {
			continue
		}
		for _, alg := range []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow, limiter.GCRA} {
			p := &limiter.Policy{Name: "bench", Algorithm: alg, Limit: 1000, Window: time.Second}
			if err := p.Validate(); err != nil {
				b.Fatal(err)
			}
			run := func(b *testing.B, parallel bool) {
				client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2, PoolSize: 64})
				defer client.Close()
				s, err := redisstore.New(client, redisstore.Options{Prefix: randomPrefix(), Timeout: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ctx := context.Background()
				b.ReportAllocs()
				if !parallel {
					for b.Loop() {
						if _, err := s.Allow(ctx, p, keys[0], 1); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, err := s.Allow(ctx, p, keys[i%len(keys)], 1); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			}
			b.Run(target+"/"+string(alg)+"/serial", func(b *testing.B) { run(b, false) })
			b.Run(target+"/"+string(alg)+"/parallel", func(b *testing.B) { run(b, true) })
		}
	}
}
