package gateway_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

func redisStoreConfig(addr string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf(`{ backend: redis, redis: { addrs: [%q], timeout: %s, prefix: "sluicetest:%s:" } }`, addr, testRedisTimeout, hex.EncodeToString(b[:]))
}

// testRedisTimeout is the store timeout of redisStoreConfig. The tests that
// use it assert exact counts, not latency; CI runs every package at once on
// two cores, where a healthy Redis call has been seen to take over 500ms, so
// the timeout is generous. Tests of timeouts replace it (withRedisTimeout).
const testRedisTimeout = "2s"

// withRedisTimeout returns store, a redisStoreConfig, with another timeout.
func withRedisTimeout(store, timeout string) string {
	return strings.Replace(store, "timeout: "+testRedisTimeout, "timeout: "+timeout, 1)
}

func TestRedisLimitingAndAdmin(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	up := newUpstream(t)
	t.Run("limiting", func(t *testing.T) {
		testLimiting(t, startGateway(t, proxyConfig(up.URL, redisStoreConfig(addr))))
	})
	t.Run("admin", func(t *testing.T) {
		testAdminAPI(t, startGateway(t, proxyConfig(up.URL, redisStoreConfig(addr))))
	})
}

func TestRedisClusterLimiting(t *testing.T) {
	t.Parallel()
	addrs := limitertest.ClusterAddrs(t)
	up := newUpstream(t)
	store := strings.Replace(redisStoreConfig(addrs[0]), fmt.Sprintf("[%q]", addrs[0]), `["`+strings.Join(addrs, `","`)+`"]`, 1)
	h := startGateway(t, proxyConfig(up.URL, store))
	testLimiting(t, h)
}

// TestRedisDown: with Redis unreachable, on_error decides, within the store
// timeout, and /readyz and the error counter tell the truth.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	for _, tc := range []struct {
		onError     string
		want        int
		ready       int    // fail-open can serve: it stays ready
		readyStatus string // and says it is degraded
	}{{"allow", 200, 200, "degraded"}, {"deny", 503, 503, "store unreachable"}} {
		t.Run(tc.onError, func(t *testing.T) {
			store := fmt.Sprintf(`{ backend: redis, on_error: %s, redis: { addrs: ["127.0.0.1:1"], timeout: 100ms } }`, tc.onError)
			h := startGateway(t, proxyConfig(up.URL, store))
			for range 3 {
				start := time.Now()
				resp, body := h.get("/limited/x")
				if took := time.Since(start); took > 2*time.Second {
					t.Fatalf("took %v with a 100ms store timeout", took)
				}
				wantStatus(t, resp, body, tc.want)
				if tc.want == 503 {
					wantJSONError(t, resp, body, 503)
				}
			}
			resp, body := h.do("GET", h.admin+"/readyz", "")
			wantStatus(t, resp, body, tc.ready)
			var ready struct{ Status, Store string }
			if err := json.Unmarshal([]byte(body), &ready); err != nil || ready.Status != tc.readyStatus || ready.Store != "down" {
				t.Fatalf("/readyz body %s, want status %q and store down", body, tc.readyStatus)
			}
			if got := metric(t, h, "sluice_store_up"); got != "0" {
				t.Fatalf("sluice_store_up %q with Redis down, want 0", got)
			}
			if got := metric(t, h, "sluice_store_errors_total"); got != "3" {
				t.Fatalf("sluice_store_errors_total %q, want 3", got)
			}
			if got := metric(t, h, `sluice_decisions_total{decision="error",policy="wide"}`); got != "3" {
				t.Fatalf("error decisions %q, want 3", got)
			}
		})
	}
}
