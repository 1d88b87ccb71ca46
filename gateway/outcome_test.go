package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// stores runs f on the memory store and, when SLUICE_TEST_REDIS is set, on
// Redis and Redis Cluster under a prefix of their own.
func stores(t *testing.T, f func(t *testing.T, store string)) {
	t.Run("memory", func(t *testing.T) { t.Parallel(); f(t, "{ backend: memory }") })
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		f(t, redisStoreConfig(limitertest.RedisAddr(t)))
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		addrs := limitertest.ClusterAddrs(t)
		f(t, strings.Replace(redisStoreConfig(addrs[0]), fmt.Sprintf("[%q]", addrs[0]), `["`+strings.Join(addrs, `","`)+`"]`, 1))
	})
}

// TestLoginBruteForce: count_status [401] on a login route, 5 failures per
// 10 minutes. Successes are refunded and never use the quota; after 5
// failures every attempt is refused, the right password too, and the
// upstream sees none of them.
func TestLoginBruteForce(t *testing.T) {
	t.Parallel()
	var hits sync.Map // X-User -> *atomic.Int64: the stores' subtests run in parallel on this upstream
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.Header.Get("X-User"), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if r.URL.Query().Get("password") != "right" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("welcome\n"))
	}))
	t.Cleanup(up.Close)
	stores(t, func(t *testing.T, store string) {
		h := startGateway(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: %s
policies:
  logins: { key: ["header:X-User"], algorithm: fixed_window, limit: 5, window: 10m, count_status: [401] }
routes:
  - name: login
    match: { path_prefix: /login }
    upstream: { url: %q }
    policies: [logins]
`, store, up.URL))
		user := fmt.Sprintf("u%p", t)
		login := func(pw string) int {
			t.Helper()
			resp, _ := h.get("/login?password="+pw, "X-User", user)
			return resp.StatusCode
		}
		count := func() float64 {
			t.Helper()
			resp, body := h.adminDo("GET", "/v1/policies/logins/keys/header:x-user:"+user, "")
			wantStatus(t, resp, body, 200)
			return decode[map[string]any](t, body)["count"].(float64)
		}
		for i := range 10 {
			if got := login("right"); got != 200 {
				t.Fatalf("success %d: %d, want 200", i, got)
			}
		}
		if c := count(); c != 0 {
			t.Fatalf("10 successes counted %v, want 0", c)
		}
		for i := range 5 {
			if got := login("wrong"); got != 401 {
				t.Fatalf("failure %d: %d, want 401", i+1, got)
			}
			if i < 4 {
				if got := login("right"); got != 200 {
					t.Fatalf("success after %d failures: %d, want 200", i+1, got)
				}
			}
		}
		if c := count(); c != 5 {
			t.Fatalf("5 failures and 4 successes counted %v, want 5", c)
		}
		userHits := func() int64 {
			n, _ := hits.LoadOrStore(user, new(atomic.Int64))
			return n.(*atomic.Int64).Load()
		}
		before := userHits()
		for _, pw := range []string{"wrong", "right", "right"} {
			if got := login(pw); got != 429 {
				t.Fatalf("password %s after 5 failures: %d, want 429", pw, got)
			}
		}
		if n := userHits() - before; n != 0 {
			t.Fatalf("the upstream saw %d refused attempts", n)
		}
		// Another user is untouched.
		if resp, _ := h.get("/login?password=wrong", "X-User", user+"-other"); resp.StatusCode != 401 {
			t.Fatalf("another user: %d, want 401", resp.StatusCode)
		}
	})
}

// TestRequestCost: a route's cost and a cost header within bounds charge
// exactly that many units; the headers and the 429 body say so.
func TestRequestCost(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, store string) {
		h := startGateway(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: %s
policies:
  units: { key: ["header:X-Tenant"], algorithm: sliding_log, limit: 20, window: 1h }
routes:
  - name: search
    match: { path_prefix: /search }
    respond: { body: "found\n" }
    cost: 5
    policies: [units]
  - name: batch
    match: { path_prefix: /batch }
    respond: { body: "done\n" }
    cost: 2
    cost_header: { name: X-Batch-Size, min: 1, max: 10 }
    policies: [units]
`, store))
		tenant := fmt.Sprintf("t%p", t)
		for i, st := range []struct {
			path, size string
			status     int
			remaining  string
		}{
			{"/search", "", 200, "15"},
			{"/search", "", 200, "10"},
			{"/batch", "", 200, "8"}, // no header: the route's cost 2
			{"/batch", "7", 200, "1"},
			{"/batch", "2", 429, "1"},
			{"/search", "", 429, "1"},
			{"/batch", "1", 200, "0"},
			{"/batch", "0", 400, ""},
			{"/batch", "11", 400, ""},
			{"/batch", "x", 400, ""},
		} {
			hdr := []string{"X-Tenant", tenant}
			if st.size != "" {
				hdr = append(hdr, "X-Batch-Size", st.size)
			}
			resp, body := h.get(st.path, hdr...)
			wantStatus(t, resp, body, st.status)
			if got := resp.Header.Get("X-RateLimit-Remaining"); got != st.remaining {
				t.Fatalf("step %d: X-RateLimit-Remaining %q, want %q", i, got, st.remaining)
			}
			if st.status == 429 {
				want := map[string]string{"/batch": `"cost":2}`, "/search": `"cost":5}`}[st.path]
				if !strings.Contains(body, `"policy":"units"`) || !strings.HasSuffix(strings.TrimSpace(body), want) {
					t.Fatalf("step %d: 429 body %s, want it to end %s", i, body, want)
				}
			}
			if st.status == 400 && !strings.Contains(body, "X-Batch-Size must be a whole number from 1 to 10") {
				t.Fatalf("step %d: 400 body %s", i, body)
			}
		}
		resp, body := h.adminDo("GET", "/v1/policies/units/keys/header:x-tenant:"+tenant, "")
		wantStatus(t, resp, body, 200)
		if u := decode[map[string]any](t, body); u["count"] != 20.0 || u["rejected"] != 2.0 {
			t.Fatalf("usage %s, want count 20 and 2 rejected", body)
		}
	})
}

// TestCompositeKeys: "header:X-API-Key + route" counts each API key on each
// route apart, needs every part (else the next source of the list, here the
// client IP), and lists its keys as the parts' keys joined by "|".
func TestCompositeKeys(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, store string) {
		h := startGateway(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: %s
policies:
  per-key-route: { key: ["header:X-API-Key + route", ip], limit: 2, window: 1h }
  per-ip-method-path: { key: ["ip + method + path"], on_missing_key: reject, limit: 3, window: 1h }
routes:
  - { name: a, match: { path_prefix: /a }, respond: { body: "a\n" }, policies: [per-key-route] }
  - { name: b, match: { path_prefix: /b }, respond: { body: "b\n" }, policies: [per-key-route] }
  - { name: c, match: { path_prefix: /c }, respond: { body: "c\n" }, policies: [per-ip-method-path] }
`, store))
		key := fmt.Sprintf("k%p", t)
		status := func(method, path string, hdr ...string) int {
			t.Helper()
			resp, _ := h.do(method, h.proxy+path, "", hdr...)
			return resp.StatusCode
		}
		for _, path := range []string{"/a", "/b"} {
			for i, want := range []int{200, 200, 429} {
				if got := status("GET", path, "X-API-Key", key); got != want {
					t.Fatalf("%s request %d: %d, want %d (each route has its own quota per key)", path, i+1, got, want)
				}
			}
		}
		// Without the header the composite is absent: the client IP.
		for i, want := range []int{200, 200, 429} {
			if got := status("GET", "/a"); got != want {
				t.Fatalf("no key, request %d: %d, want %d", i+1, got, want)
			}
		}
		resp, body := h.adminDo("GET", "/v1/policies/per-key-route/keys/"+url.PathEscape("header:x-api-key:"+key+"|route:a"), "")
		wantStatus(t, resp, body, 200)
		if u := decode[map[string]any](t, body); u["count"] != 2.0 || u["rejected"] != 1.0 {
			t.Fatalf("usage of the composite key: %s", body)
		}
		resp, body = h.adminDo("GET", "/v1/policies/per-key-route/keys", "")
		wantStatus(t, resp, body, 200)
		var paths []string
		for _, u := range decode[struct{ Keys []map[string]any }](t, body).Keys {
			paths = append(paths, u["key_path"].(string))
		}
		slices.Sort(paths)
		want := []string{"127.0.0.1", "header:x-api-key:" + key + "%7Croute:a", "header:x-api-key:" + key + "%7Croute:b"}
		if !slices.Equal(paths, want) {
			t.Fatalf("listing %v, want %v", paths, want)
		}
		// ip + method + path: GET and POST of one path are apart.
		for _, m := range []string{"GET", "POST"} {
			for i, want := range []int{200, 200, 200, 429} {
				if got := status(m, "/c/x"); got != want {
					t.Fatalf("%s /c/x request %d: %d, want %d", m, i+1, got, want)
				}
			}
		}
		if got := status("GET", "/c/y"); got != 200 {
			t.Fatalf("GET /c/y: %d, want 200", got)
		}
		resp, body = h.adminDo("GET", "/v1/policies/per-ip-method-path/keys/"+url.PathEscape("127.0.0.1|method:POST|path:/c/x"), "")
		wantStatus(t, resp, body, 200)
		if u := decode[map[string]any](t, body); u["count"] != 3.0 {
			t.Fatalf("usage of ip+method+path: %s", body)
		}
	})
}
