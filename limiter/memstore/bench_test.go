package memstore_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
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

// BenchmarkAllowManyKeys measures parallel decisions over 100,000 keys in
// random order, each seen before: a gateway's working set, which outgrows
// the CPU caches, so the cache lines a decision touches set its cost. As
// in a gateway, a request's key is not the string its entry was made from.
func BenchmarkAllowManyKeys(b *testing.B) {
	keys, again := make([]string, 100_000), make([]string, 100_000)
	for i := range keys {
		keys[i] = "203.0.113." + strconv.Itoa(i%256) + "/" + strconv.Itoa(i)
		again[i] = strings.Clone(keys[i])
	}
	p := &limiter.Policy{Name: "bench", Limit: 1 << 40, Window: time.Minute}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()
	for _, k := range keys {
		if _, err := s.Allow(ctx, p, k, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			if _, err := s.Allow(ctx, p, again[r.IntN(len(again))], 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
