package gateway_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/faultproxy"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// TestRedisFaults drives a gateway whose Redis sits behind a fault proxy:
// while Redis hangs, on_error decides every request within the store
// timeout; /readyz and sluice_store_errors_total tell the truth; service is
// normal within 1s of Redis coming back.
func TestRedisFaults(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	up := newUpstream(t)
	for _, tc := range []struct {
		onError string
		down    int
		ready   int // /readyz while Redis hangs: fail-open keeps serving
	}{{"allow", 200, 200}, {"deny", 503, 503}} {
		t.Run(tc.onError, func(t *testing.T) {
			t.Parallel()
			fp, err := faultproxy.Start(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer fp.Close()
			store := withRedisTimeout(redisStoreConfig(fp.Addr()), "100ms")
			store = strings.Replace(store, "backend: redis,", "backend: redis, on_error: "+tc.onError+",", 1)
			h := startGateway(t, strings.Replace(proxyConfig(up.URL, store), "per-ip: { limit: 3, window: 1m }", "per-ip: { limit: 100000, window: 1m }", 1))
			errorsSoFar := func() int {
				n, _ := strconv.Atoi(metric(t, h, "sluice_store_errors_total"))
				return n
			}
			ready := func() int {
				resp, _ := h.do("GET", h.admin+"/readyz", "")
				return resp.StatusCode
			}
			// Healthy: five limited requests in a row without a store error
			// (a loaded CI machine may miss a 100ms deadline now and then).
			deadline := time.Now().Add(5 * time.Second)
			for streak := 0; streak < 5; {
				if time.Now().After(deadline) {
					t.Fatal("no healthy streak of 5 requests within 5s")
				}
				before := errorsSoFar()
				resp, _ := h.get("/limited/x")
				if resp.StatusCode == 200 && errorsSoFar() == before {
					streak++
				} else {
					streak = 0
				}
			}
			if ready() != 200 {
				t.Fatal("healthy: /readyz is not 200")
			}
			baseline := errorsSoFar()

			fp.Pause()
			var slowest time.Duration
			for i := range 30 {
				start := time.Now()
				resp, body := h.get("/limited/x")
				took := time.Since(start)
				slowest = max(slowest, took)
				if resp.StatusCode != tc.down {
					t.Fatalf("request %d with Redis hanging: %d, want %d; %s", i, resp.StatusCode, tc.down, body)
				}
				if tc.down == 503 {
					wantJSONError(t, resp, body, 503)
				}
				if took > 100*time.Millisecond+300*time.Millisecond {
					t.Fatalf("request %d took %v with a 100ms store timeout", i, took)
				}
			}
			if got := errorsSoFar() - baseline; got != 30 {
				t.Fatalf("store errors grew by %d while Redis hung, want 30 (one per request)", got)
			}
			if got := ready(); got != tc.ready {
				t.Fatalf("/readyz with Redis hanging: %d, want %d", got, tc.ready)
			}

			fp.Resume()
			back := time.Now()
			for {
				before := errorsSoFar()
				resp, _ := h.get("/limited/x")
				if resp.StatusCode == 200 && errorsSoFar() == before && resp.Header.Get("RateLimit") != "" {
					break
				}
				if time.Since(back) > 2*time.Second {
					t.Fatal("not back to normal 2s after Redis returned")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if took := time.Since(back); took > time.Second {
				t.Fatalf("normal service %v after Redis returned, want within 1s", took)
			}
			if ready() != 200 {
				t.Fatal("/readyz still reports the store down")
			}
			t.Logf("on_error=%s: slowest request while Redis hung %v", tc.onError, slowest)
		})
	}
}
