package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	for _, policy := range []string{"log", "window"} {
		checkFleetListing(t, gws, policy, 100, clients*each-100)
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

// checkFleetListing lists the policy's keys on every gateway of a fleet
// whose only key took admitted and rejected requests: each gateway must
// list it once, with the fleet's summed counts, once the gateways' summaries
// have reached Redis (each flushes about once a second).
func checkFleetListing(t *testing.T, gws []*harness, policy string, admitted, rejected int) {
	t.Helper()
	type listing struct {
		Keys []struct {
			Key      string `json:"key"`
			Count    int    `json:"count"`
			Rejected int    `json:"rejected"`
		} `json:"keys"`
		ActiveKeys int `json:"active_keys"`
	}
	for i, h := range gws {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, body := h.adminDo("GET", "/v1/policies/"+policy+"/keys?limit=10", "")
			wantStatus(t, resp, body, 200)
			l := decode[listing](t, body)
			if len(l.Keys) > 1 {
				t.Fatalf("gateway %d, policy %s: %d keys listed, want the one key once: %s", i, policy, len(l.Keys), body)
			}
			if len(l.Keys) == 1 && l.Keys[0].Count == admitted && l.Keys[0].Rejected == rejected && l.ActiveKeys == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway %d, policy %s: listing %s; want one key with count %d and rejected %d, active_keys 1", i, policy, body, admitted, rejected)
			}
			time.Sleep(100 * time.Millisecond) // the next background flush
		}
	}
}

// TestFleetReset: a key over its limit is rejected by three gateway
// processes, two of them from their local cache of blocked keys; a reset
// through the first gateway lets the next requests through on every
// gateway, long before the hour-long retry-after.
func TestFleetReset(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	path := writeConfig(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { format: json, access: false }
store: %s
policies:
  tight: { key: ["header:X-Tenant"], limit: 2, window: 1h }
routes:
  - { name: r, match: { path_prefix: / }, respond: { body: ok }, policies: [tight] }
`, redisStoreConfig(addr)))
	var gws []*harness
	for range 3 {
		gws = append(gws, startBinary(t, path).harness(t))
	}
	status := func(h *harness) int {
		req, _ := http.NewRequest("GET", h.proxy+"/", nil)
		req.Header.Set("X-Tenant", "acme")
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, want := range []int{200, 200, 429} {
		if got := status(gws[0]); got != want {
			t.Fatalf("request %d through gateway 0: %d, want %d", i, got, want)
		}
	}
	for i := 1; i < 3; i++ {
		for range 2 { // the second is answered from the local cache
			if got := status(gws[i]); got != 429 {
				t.Fatalf("gateway %d: %d, want 429", i, got)
			}
		}
	}
	resp, body := gws[0].adminDo("GET", "/v1/policies/tight/keys", "")
	wantStatus(t, resp, body, 200)
	var key string
	type listing struct {
		Keys []struct {
			Key string `json:"key"`
		} `json:"keys"`
	}
	if l := decode[listing](t, body).Keys; len(l) == 1 {
		key = l[0].Key
	} else {
		t.Fatalf("listing before the reset: %s", body)
	}
	resp, body = gws[0].adminDo("DELETE", "/v1/policies/tight/keys/"+url.PathEscape(key), "")
	wantStatus(t, resp, body, 204)
	reset := time.Now()
	for i := 1; i < 3; i++ {
		rejected := 0
		for status(gws[i]) != 200 {
			rejected++
			if time.Since(reset) > 2*time.Second {
				t.Fatalf("gateway %d still rejects 2s after the reset (%d rejections): its local cache was not told", i, rejected)
			}
		}
		t.Logf("gateway %d admitted %v after the reset, after %d local rejections", i, time.Since(reset), rejected)
	}
}
