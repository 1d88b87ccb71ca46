package memstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

var benchAlgorithms = []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow, limiter.GCRA}

// BenchmarkAllow measures one decision per operation: serial on one key and
// parallel over 1024 keys. The limit is high enough that most are admitted.
func BenchmarkAllow(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	for _, alg := range benchAlgorithms {
		p := &limiter.Policy{Name: "bench", Algorithm: alg, Limit: 1000, Window: time.Second}
		if err := p.Validate(); err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg)+"/serial", func(b *testing.B) {
			s := memstore.New(memstore.Options{})
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Allow(ctx, p, keys[0], 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/parallel", func(b *testing.B) {
			s := memstore.New(memstore.Options{})
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
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
		})
	}
}
