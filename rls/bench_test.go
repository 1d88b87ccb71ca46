package rls_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/rls"
)

// BenchmarkDecisions compares decisions per second on the memory store:
// "in-process" is limiter.Check as the middleware calls it for a request,
// "grpc" the same decision asked by a real gRPC client through
// ShouldRateLimit over one loopback connection (one descriptor per call,
// 1000 keys, never over the limit). Run it on an idle machine:
//
//	go test ./rls -run '^$' -bench Decisions -benchtime 5s -cpu 1,2
func BenchmarkDecisions(b *testing.B) {
	p := &limiter.Policy{Name: "bench", Limit: 1 << 40, Window: time.Minute}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	b.Run("in-process", func(b *testing.B) {
		store := memstore.New(memstore.Options{})
		defer store.Close()
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var buf [1]limiter.Decision
			for pb.Next() {
				k := keys[next.Add(1)%int64(len(keys))]
				out, err := limiter.Check(context.Background(), store, []limiter.Request{{Policy: p, Key: k, Cost: 1}}, buf[:0])
				if err != nil || !out.Allowed {
					b.Fatalf("%v %v", out, err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("grpc", func(b *testing.B) {
		f := start(b, memstore.New(memstore.Options{}), rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{{Key: "remote_address", Policy: p}}})
		defer f.store.Close()
		reqs := make([]*rlsv3.RateLimitRequest, len(keys))
		for i, k := range keys {
			reqs[i] = &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonv3.RateLimitDescriptor{desc("remote_address", k)}}
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := f.client.ShouldRateLimit(context.Background(), reqs[next.Add(1)%int64(len(reqs))])
				if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}
