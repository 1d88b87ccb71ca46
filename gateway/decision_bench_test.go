package gateway_test

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkDecisionEndpoint measures decisions per second through the HTTP
// decision endpoint (the Traefik form, keep-alive connections, 1000 client
// addresses, never over the limit, memory store). Compare it with
// BenchmarkDecisions in rls/ (gRPC and in-process) on an idle machine:
//
//	go test ./gateway -run '^$' -bench DecisionEndpoint -benchtime 5s
func BenchmarkDecisionEndpoint(b *testing.B) {
	h := startGateway(b, `
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "t0k" }
log: { access: false }
decision: { listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1] }
policies:
  per-ip: { limit: 1000000000000, window: 1m }
routes:
  - { name: api, match: { path_prefix: /api }, respond: { status: 204 }, policies: [per-ip] }
`)
	url := "http://" + h.g.DecisionAddr() + "/traefik"
	clients := make([]string, 1000)
	for i := range clients {
		clients[i] = "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("X-Forwarded-Uri", "/api/items?page=1")
			req.Header.Set("X-Forwarded-Method", "GET")
			req.Header.Set("X-Forwarded-For", clients[next.Add(1)%int64(len(clients))])
			resp, err := h.client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
