package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// stores runs f on the memory store and, when SLUICE_TEST_REDIS is set, on
// Redis under a prefix of its own.
func stores(t *testing.T, f func(t *testing.T, store string)) {
	t.Run("memory", func(t *testing.T) { t.Parallel(); f(t, "{ backend: memory }") })
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		f(t, redisStoreConfig(limitertest.RedisAddr(t)))
	})
}

// TestLoginBruteForce: count_status [401] on a login route, 5 failures per
// 10 minutes. Successes are refunded and never use the quota; after 5
// failures every attempt is refused, the right password too, and the
// upstream sees none of them.
func TestLoginBruteForce(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
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
		before := hits.Load()
		for _, pw := range []string{"wrong", "right", "right"} {
			if got := login(pw); got != 429 {
				t.Fatalf("password %s after 5 failures: %d, want 429", pw, got)
			}
		}
		if n := hits.Load() - before; n != 0 {
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
