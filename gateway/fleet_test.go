package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// fleetConfig: two policies keyed by one header, so every client shares
// one key; a counter lives in the same store.
func fleetConfig(redisAddrs []string) string {
	return strings.Replace(fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { format: json, access: false }
store: %s
policies:
  log: { key: ["header:X-Tenant"], algorithm: sliding_log, limit: 100, window: 1h }
  window: { key: ["header:X-Tenant"], algorithm: sliding_window, limit: 100, window: 1h }
routes:
  - { name: log, match: { path_prefix: /log }, respond: { body: ok }, policies: [log] }
  - { name: window, match: { path_prefix: /window }, respond: { body: ok }, policies: [window] }
`, redisStoreConfig(redisAddrs[0])), fmt.Sprintf("[%q]", redisAddrs[0]), `["`+strings.Join(redisAddrs, `","`)+`"]`, 1)
}

// runFleet starts three gateway processes on one store and checks the
// fleet's exactness with 60 concurrent clients on one key.
func runFleet(t *testing.T, addrs []string) {
	path := writeConfig(t, fleetConfig(addrs))
	var gws []*harness
	for range 3 {
		gws = append(gws, startBinary(t, path).harness(t))
	}
	const clients, each = 60, 6 // 360 requests per route
	for _, route := range []string{"/log", "/window"} {
		var ok, limited atomic.Int64
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for i := range each {
					h := gws[(c+i)%len(gws)]
					req, _ := http.NewRequest("GET", h.proxy+route, nil)
					req.Header.Set("X-Tenant", "acme")
					resp, err := h.client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						ok.Add(1)
					case 429:
						limited.Add(1)
					default:
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		// sliding_log is exact; sliding_window's bound is 100 + 100/10, and a
		// burst inside one bucket is counted exactly, so both admit 100.
		if ok.Load() != 100 || limited.Load() != clients*each-100 {
			t.Fatalf("%s: 3 gateways x %d clients admitted %d and limited %d; want exactly 100 and %d",
				route, clients, ok.Load(), limited.Load(), clients*each-100)
		}
		t.Logf("%s: 3 gateways x %d clients x %d requests: admitted %d, limited %d", route, clients, each, ok.Load(), limited.Load())
	}

	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := range 50 {
		wg.Go(func() {
			for i := range 20 {
				h := gws[(c+i)%len(gws)]
				resp, body := h.adminDo("POST", "/v1/counters/jobs/increment", "")
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("increment: %d %s", resp.StatusCode, body)
				}
			}
		})
	}
	wg.Wait()
	resp, body := gws[0].adminDo("GET", "/v1/counters/jobs", "")
	wantStatus(t, resp, body, 200)
	if v := decode[map[string]any](t, body)["value"]; v != float64(1000) {
		t.Fatalf("1,000 concurrent increments over 3 gateways ended at %v", v)
	}
}

func TestFleetOnRedis(t *testing.T) {
	t.Parallel()
	runFleet(t, []string{limitertest.RedisAddr(t)})
}

func TestFleetOnRedisCluster(t *testing.T) {
	t.Parallel()
	runFleet(t, limitertest.ClusterAddrs(t))
}
