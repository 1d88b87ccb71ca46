package gateway_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

const rlsConfig = `
listen: "127.0.0.1:0"
trusted_proxies: [127.0.0.1]
admin: { listen: "127.0.0.1:0", token: "t0k" }
log: { access: false }
policies:
  per-ip: { limit: 3, window: 1m }
  per-user: { key: ["header:X-User"], limit: 2, window: 1m }
routes:
  - { name: api, match: { path_prefix: /api }, respond: { status: 200 }, policies: [per-ip] }
rls:
  listen: "127.0.0.1:0"
  domains:
    - domain: edge
      descriptors:
        - { key: remote_address, policy: per-ip }
        - key: generic_key
          value: checkout
          descriptors:
            - { key: user, policy: per-user }
`

func rlsClient(t *testing.T, addr string) rlsv3.RateLimitServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

func shouldRateLimit(t *testing.T, c rlsv3.RateLimitServiceClient, domain string, kv ...string) *rlsv3.RateLimitResponse {
	t.Helper()
	d := &commonv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	resp, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*commonv3.RateLimitDescriptor{d}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

// TestRLSInTheGateway checks that Envoy's calls share the proxy's store,
// quotas, admin API, metrics and history, and follow a reload.
func TestRLSInTheGateway(t *testing.T) {
	t.Parallel()
	h := startGateway(t, rlsConfig)
	c := rlsClient(t, h.g.RLSAddr())

	// Two requests through the proxy listener and one call from Envoy use
	// up the client's three.
	for range 2 {
		resp, body := h.get("/api/x", "X-Forwarded-For", "203.0.113.50")
		wantStatus(t, resp, body, 200)
	}
	if r := shouldRateLimit(t, c, "edge", "remote_address", "203.0.113.50"); r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("third: %v", r)
	}
	if r := shouldRateLimit(t, c, "edge", "remote_address", "203.0.113.50"); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("fourth: %v", r)
	}
	resp, body := h.get("/api/x", "X-Forwarded-For", "203.0.113.50")
	wantStatus(t, resp, body, 429)
	if u := keyUsage(t, h, "per-ip", "203.0.113.50"); u["count"] != 3.0 || u["rejected"] != 2.0 {
		t.Fatalf("usage: %v", u)
	}

	// IPv6 clients are keyed by their /64, as on the proxy listener.
	shouldRateLimit(t, c, "edge", "remote_address", "2001:db8:0:1::1")
	shouldRateLimit(t, c, "edge", "remote_address", "2001:db8:0:1::2")
	if u := keyUsage(t, h, "per-ip", "2001:db8:0:1::/64"); u["count"] != 2.0 {
		t.Fatalf("usage of the /64: %v", u)
	}

	for n, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		if r := shouldRateLimit(t, c, "edge", "generic_key", "checkout", "user", "alice"); r.OverallCode != want {
			t.Fatalf("checkout %d: %v", n, r)
		}
	}
	if u := keyUsage(t, h, "per-user", "descriptor:user:alice"); u["count"] != 2.0 || u["rejected"] != 1.0 {
		t.Fatalf("usage of alice: %v", u)
	}
	for series, want := range map[string]string{
		`sluice_decisions_total{decision="allowed",policy="per-user"}`:  "2",
		`sluice_decisions_total{decision="rejected",policy="per-user"}`: "1",
		`sluice_decisions_total{decision="allowed",policy="per-ip"}`:    "5",
		`sluice_decisions_total{decision="rejected",policy="per-ip"}`:   "2",
	} {
		if got := metric(t, h, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	if err := h.g.FlushHistory(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, body = h.adminDo("GET", "/v1/policies/per-user/history", "")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, `"admitted":2`) || !strings.Contains(body, `"rejected":1`) {
		t.Fatalf("history of per-user: %s", body)
	}

	// A reload that maps user under a new domain takes effect on the next
	// call, on the same listener.
	cfg := strings.Replace(rlsConfig, "- domain: edge", "- domain: mesh", 1)
	if err := os.WriteFile(h.path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := shouldRateLimit(t, c, "edge", "generic_key", "checkout", "user", "alice"); r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].CurrentLimit != nil {
		t.Fatalf("old domain after reload: %v", r)
	}
	if r := shouldRateLimit(t, c, "mesh", "generic_key", "checkout", "user", "alice"); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("new domain after reload: %v", r)
	}
}

// TestRLSStoreOutage follows store.on_error when Redis is unreachable.
func TestRLSStoreOutage(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		onError string
		want    rlsv3.RateLimitResponse_Code
	}{{"allow", rlsv3.RateLimitResponse_OK}, {"deny", rlsv3.RateLimitResponse_OVER_LIMIT}} {
		t.Run(tc.onError, func(t *testing.T) {
			t.Parallel()
			h := startGateway(t, rlsConfig+fmt.Sprintf("store: { backend: redis, on_error: %s, redis: { addrs: [%q], timeout: 100ms } }\n", tc.onError, dead))
			c := rlsClient(t, h.g.RLSAddr())
			for range 2 {
				if r := shouldRateLimit(t, c, "edge", "remote_address", "192.0.2.9"); r.OverallCode != tc.want || r.Statuses[0].Code != tc.want {
					t.Fatalf("%v", r)
				}
			}
			if got := metric(t, h, `sluice_decisions_total{decision="error",policy="per-ip"}`); got != "2" {
				t.Fatalf("error decisions %q, want 2", got)
			}
			if got := metric(t, h, "sluice_store_errors_total"); got != "2" {
				t.Fatalf("store errors %q, want 2", got)
			}
		})
	}
}

// TestRLSOff checks that nothing listens unless configured.
func TestRLSOff(t *testing.T) {
	t.Parallel()
	h := startGateway(t, strings.Replace(rlsConfig, `listen: "127.0.0.1:0"
  domains:`, `domains:`, 1))
	if a := h.g.RLSAddr(); a != "" {
		t.Fatalf("RLSAddr %q with rls.listen unset", a)
	}
}

// TestRLSOnRedis admits exactly the limit to 50 concurrent Envoy callers on
// the Redis store, and shows the count in the admin API.
func TestRLSOnRedis(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	cfg := strings.Replace(rlsConfig, "per-ip: { limit: 3, window: 1m }", "per-ip: { limit: 60, window: 1h }", 1)
	h := startGateway(t, cfg+"store: "+redisStoreConfig(addr)+"\n")
	c := rlsClient(t, h.g.RLSAddr())
	const callers, each = 50, 3
	var mu sync.Mutex
	codes := map[rlsv3.RateLimitResponse_Code]int{}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				resp, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge",
					Descriptors: []*commonv3.RateLimitDescriptor{{Entries: []*commonv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "198.51.100.77"}}}}})
				mu.Lock()
				if err != nil {
					codes[-1]++
				} else {
					codes[resp.OverallCode]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if codes[rlsv3.RateLimitResponse_OK] != 60 || codes[rlsv3.RateLimitResponse_OVER_LIMIT] != callers*each-60 {
		t.Fatalf("answers %v, want 60 OK and %d OVER_LIMIT", codes, callers*each-60)
	}
	if u := keyUsage(t, h, "per-ip", "198.51.100.77"); u["count"] != 60.0 || u["rejected"] != float64(callers*each-60) {
		t.Fatalf("usage: %v", u)
	}
}
