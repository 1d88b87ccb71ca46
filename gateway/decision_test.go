package gateway_test

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway"
)

// decisionConfig is a gateway with the decision endpoint on; trusted lists
// decision.trusted_proxies and top the top-level trusted_proxies.
func decisionConfig(trusted, top string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
trusted_proxies: [%s]
admin: { listen: "127.0.0.1:0", token: "t0k" }
log: { access: false }
decision: { listen: "127.0.0.1:0", trusted_proxies: [%s] }
policies:
  per-ip: { limit: 3, window: 1m }
  per-key: { key: ["header:X-API-Key", "query:key"], on_missing_key: reject, limit: 2, window: 1m }
  per-host: { limit: 1, window: 1m }
routes:
  - { name: api, match: { path_prefix: /api }, respond: { status: 200 }, policies: [per-ip] }
  - { name: keyed, match: { path_prefix: /keyed }, respond: { status: 200 }, policies: [per-key] }
  - { name: posts, match: { path_prefix: /posts, methods: [POST] }, respond: { status: 200 }, policies: [per-ip] }
  - { name: hosted, match: { path_prefix: /api, host: "shop.example" }, respond: { status: 200 }, policies: [per-host] }
  - { name: open, match: { path_prefix: /open }, respond: { status: 200 } }
`, top, trusted)
}

// decisionCall describes one original request to the decision endpoint in
// the form of endpoint (nginx, traefik or caddy).
type decisionCall struct {
	endpoint, method, uri, host, client string
	hdr                                 []string
}

func (h *harness) decide(c decisionCall) (*http.Response, string) {
	h.t.Helper()
	if c.method == "" {
		c.method = "GET"
	}
	var hdr []string
	if c.endpoint == "nginx" {
		hdr = []string{"X-Original-URI", c.uri, "X-Original-Method", c.method}
		if c.host != "" {
			hdr = append(hdr, "X-Original-Host", c.host)
		}
		if c.client != "" {
			hdr = append(hdr, "X-Real-IP", c.client, "X-Forwarded-For", c.client)
		}
	} else {
		hdr = []string{"X-Forwarded-Uri", c.uri, "X-Forwarded-Method", c.method, "X-Forwarded-Proto", "https"}
		if c.host != "" {
			hdr = append(hdr, "X-Forwarded-Host", c.host)
		}
		if c.client != "" {
			hdr = append(hdr, "X-Forwarded-For", c.client)
		}
	}
	return h.do("GET", "http://"+h.g.DecisionAddr()+"/"+c.endpoint, "", append(hdr, c.hdr...)...)
}

// keyUsage reads one key's usage from the admin API.
func keyUsage(t *testing.T, h *harness, policy, key string) map[string]any {
	t.Helper()
	resp, body := h.adminDo("GET", "/v1/policies/"+policy+"/keys/"+url.PathEscape(key), "")
	wantStatus(t, resp, body, 200)
	return decode[map[string]any](t, body)
}

// TestDecisionEndpointForms drives each form to the limit and past it:
// exact admissions, the rate-limit headers, the rejection status each proxy
// can map, and the counts in the admin API.
func TestDecisionEndpointForms(t *testing.T) {
	t.Parallel()
	h := startGateway(t, decisionConfig("127.0.0.1", ""))
	for i, tc := range []struct {
		endpoint string
		reject   int
	}{{"nginx", 403}, {"traefik", 429}, {"caddy", 429}} {
		t.Run(tc.endpoint, func(t *testing.T) {
			client := fmt.Sprintf("203.0.113.%d", 10+i)
			for n := range 3 {
				resp, body := h.decide(decisionCall{endpoint: tc.endpoint, uri: "/api/items?page=2", client: client})
				wantStatus(t, resp, body, 200)
				if body != "" {
					t.Fatalf("allowed: body %q, want none", body)
				}
				if got, want := resp.Header.Get("X-RateLimit-Remaining"), fmt.Sprint(2-n); got != want {
					t.Fatalf("request %d: X-RateLimit-Remaining %q, want %q", n, got, want)
				}
				if got := resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=3;w=60` {
					t.Fatalf("RateLimit-Policy %q", got)
				}
			}
			resp, body := h.decide(decisionCall{endpoint: tc.endpoint, uri: "/api/items", client: client})
			wantStatus(t, resp, body, tc.reject)
			if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Fatalf("Retry-After %q", ra)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q, want no-store", cc)
			}
			if got := resp.Header.Get("X-RateLimit-Remaining"); got != "0" {
				t.Fatalf("rejected: X-RateLimit-Remaining %q, want 0", got)
			}
			if !strings.Contains(body, `"policy":"per-ip"`) {
				t.Fatalf("rejected: body %s", body)
			}
			u := keyUsage(t, h, "per-ip", client)
			if u["count"] != 3.0 || u["rejected"] != 1.0 {
				t.Fatalf("usage of %s: %v, want count 3 rejected 1", client, u)
			}
			// Another client has its own quota.
			resp, body = h.decide(decisionCall{endpoint: tc.endpoint, uri: "/api/items", client: "198.51.100.7" + fmt.Sprint(i)})
			wantStatus(t, resp, body, 200)
		})
	}
}

// TestDecisionEndpointMatchesLikeTheProxy checks that the endpoint routes
// and keys a described request as the proxy listener routes and keys the
// same request, and that both charge one quota.
func TestDecisionEndpointMatchesLikeTheProxy(t *testing.T) {
	t.Parallel()
	h := startGateway(t, decisionConfig("127.0.0.1", "127.0.0.1"))
	remaining := func(resp *http.Response) string { return resp.Header.Get("X-RateLimit-Remaining") }

	t.Run("one quota for proxied and decided requests", func(t *testing.T) {
		for range 2 {
			resp, body := h.get("/api/x", "X-Forwarded-For", "192.0.2.1")
			wantStatus(t, resp, body, 200)
		}
		resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/api/y", client: "192.0.2.1"})
		wantStatus(t, resp, body, 200)
		if remaining(resp) != "0" {
			t.Fatalf("X-RateLimit-Remaining %q, want 0", remaining(resp))
		}
		resp, body = h.get("/api/x", "X-Forwarded-For", "192.0.2.1")
		wantStatus(t, resp, body, 429)
	})
	t.Run("host routes", func(t *testing.T) {
		resp, body := h.decide(decisionCall{endpoint: "nginx", uri: "/api/a", host: "shop.example", client: "192.0.2.2"})
		wantStatus(t, resp, body, 200)
		if p := resp.Header.Get("RateLimit-Policy"); !strings.HasPrefix(p, `"per-host"`) {
			t.Fatalf("host route: RateLimit-Policy %q, want per-host", p)
		}
		resp, body = h.decide(decisionCall{endpoint: "nginx", uri: "/api/a", host: "SHOP.example:443", client: "192.0.2.2"})
		wantStatus(t, resp, body, 403)
		resp, body = h.decide(decisionCall{endpoint: "caddy", uri: "/api/a", host: "other.example", client: "192.0.2.2"})
		wantStatus(t, resp, body, 200)
		if p := resp.Header.Get("RateLimit-Policy"); !strings.HasPrefix(p, `"per-ip"`) {
			t.Fatalf("other host: RateLimit-Policy %q, want per-ip", p)
		}
	})
	t.Run("whole segments, methods, unlimited routes", func(t *testing.T) {
		for _, c := range []decisionCall{
			{endpoint: "traefik", uri: "/apix/1", client: "192.0.2.3"},                 // no route
			{endpoint: "traefik", uri: "/posts/1", method: "GET", client: "192.0.2.3"}, // 405 on the proxy: not limited here
			{endpoint: "traefik", uri: "/open/1", client: "192.0.2.3"},                 // no policies
		} {
			for range 5 {
				resp, body := h.decide(c)
				wantStatus(t, resp, body, 200)
				if l := resp.Header.Get("X-RateLimit-Limit"); l != "" {
					t.Fatalf("%s %s: X-RateLimit-Limit %q on an unlimited request", c.method, c.uri, l)
				}
			}
		}
		resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/posts/1", method: "POST", client: "192.0.2.3"})
		wantStatus(t, resp, body, 200)
		if l := resp.Header.Get("X-RateLimit-Limit"); l != "3" {
			t.Fatalf("POST /posts: X-RateLimit-Limit %q, want 3", l)
		}
	})
	t.Run("cleaned paths", func(t *testing.T) {
		// /open is not limited; its dot segments must not lead around /api.
		for n, uri := range []string{"/open/../api/x", "//api/./x", "/open/%2e%2e/api"} {
			resp, body := h.decide(decisionCall{endpoint: "nginx", uri: uri, client: "192.0.2.6"})
			wantStatus(t, resp, body, 200)
			if remaining(resp) != fmt.Sprint(2-n) {
				t.Fatalf("%s: X-RateLimit-Remaining %q, want %d", uri, remaining(resp), 2-n)
			}
		}
		resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/open/..%2fapi", client: "192.0.2.6"})
		wantJSONError(t, resp, body, 400)
	})
	t.Run("header and query keys pass through", func(t *testing.T) {
		for n := range 2 {
			resp, body := h.decide(decisionCall{endpoint: "caddy", uri: "/keyed", client: "192.0.2.4", hdr: []string{"X-API-Key", "k-1"}})
			wantStatus(t, resp, body, 200)
			if remaining(resp) != fmt.Sprint(1-n) {
				t.Fatalf("X-RateLimit-Remaining %q", remaining(resp))
			}
		}
		// Query key k-1 is not header key k-1: its own quota of 2.
		for range 2 {
			resp, body := h.decide(decisionCall{endpoint: "nginx", uri: "/keyed?key=k-1", client: "192.0.2.5"})
			wantStatus(t, resp, body, 200)
		}
		resp, body := h.decide(decisionCall{endpoint: "nginx", uri: "/keyed?key=k-1", client: "192.0.2.5"})
		wantStatus(t, resp, body, 403)
		resp, body = h.decide(decisionCall{endpoint: "nginx", uri: "/keyed?key=k-2", client: "192.0.2.5"})
		wantStatus(t, resp, body, 200)
		resp, body = h.decide(decisionCall{endpoint: "traefik", uri: "/keyed", client: "192.0.2.5"})
		wantJSONError(t, resp, body, 400)
	})
}

// TestDecisionEndpointTrust checks whose forwarded address is believed and
// that a client cannot choose the route or the key.
func TestDecisionEndpointTrust(t *testing.T) {
	t.Parallel()
	t.Run("untrusted caller", func(t *testing.T) {
		t.Parallel()
		// The top-level list trusts loopback, the endpoint's own list does
		// not: the endpoint keys by the caller's address.
		h := startGateway(t, decisionConfig("10.0.0.0/8", "127.0.0.1"))
		for n := range 4 {
			resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/api", client: fmt.Sprintf("203.0.113.%d", n)})
			want := 200
			if n == 3 {
				want = 429
			}
			wantStatus(t, resp, body, want)
		}
		if u := keyUsage(t, h, "per-ip", "127.0.0.1"); u["count"] != 3.0 {
			t.Fatalf("usage of 127.0.0.1: %v, want count 3", u)
		}
	})
	t.Run("top-level list by default", func(t *testing.T) {
		t.Parallel()
		h := startGateway(t, decisionConfig("", "127.0.0.0/8"))
		resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/api", client: "203.0.113.9"})
		wantStatus(t, resp, body, 200)
		if u := keyUsage(t, h, "per-ip", "203.0.113.9"); u["count"] != 1.0 {
			t.Fatalf("usage: %v, want count 1", u)
		}
	})
	t.Run("no trust at all", func(t *testing.T) {
		t.Parallel()
		h := startGateway(t, decisionConfig("", ""))
		resp, body := h.decide(decisionCall{endpoint: "nginx", uri: "/api", client: "203.0.113.9"})
		wantStatus(t, resp, body, 200)
		if u := keyUsage(t, h, "per-ip", "127.0.0.1"); u["count"] != 1.0 {
			t.Fatalf("usage: %v, want count 1", u)
		}
	})
	t.Run("right-most untrusted forwarded address", func(t *testing.T) {
		t.Parallel()
		h := startGateway(t, decisionConfig("127.0.0.1, 10.0.0.0/8", ""))
		resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/api", client: "1.1.1.1, 203.0.113.20, 10.1.2.3"})
		wantStatus(t, resp, body, 200)
		if u := keyUsage(t, h, "per-ip", "203.0.113.20"); u["count"] != 1.0 {
			t.Fatalf("usage: %v, want count 1", u)
		}
	})
	t.Run("the path picks the form", func(t *testing.T) {
		t.Parallel()
		h := startGateway(t, decisionConfig("127.0.0.1", ""))
		// Traefik passes the client's headers on: an X-Original-URI of the
		// client's own must not move the request to an unlimited route.
		for n := range 4 {
			resp, body := h.decide(decisionCall{endpoint: "traefik", uri: "/api", client: "203.0.113.30",
				hdr: []string{"X-Original-URI", "/open", "X-Real-IP", "198.51.100.1"}})
			want := 200
			if n == 3 {
				want = 429
			}
			wantStatus(t, resp, body, want)
		}
	})
}

// TestDecisionEndpointBadInput answers descriptions it cannot read with a
// 400 JSON error and unknown paths with 404.
func TestDecisionEndpointBadInput(t *testing.T) {
	t.Parallel()
	h := startGateway(t, decisionConfig("127.0.0.1", ""))
	base := "http://" + h.g.DecisionAddr()
	for _, tc := range []struct {
		name, path string
		hdr        []string
		status     int
	}{
		{"no uri", "/nginx", nil, 400},
		{"no uri traefik", "/traefik", []string{"X-Original-URI", "/api"}, 400},
		{"relative uri", "/nginx", []string{"X-Original-URI", "api/x"}, 400},
		{"asterisk", "/caddy", []string{"X-Forwarded-Uri", "*"}, 400},
		{"bad method", "/nginx", []string{"X-Original-URI", "/api", "X-Original-Method", "GE T"}, 400},
		{"method with a slash", "/traefik", []string{"X-Forwarded-Uri", "/api", "X-Forwarded-Method", "G/T"}, 400},
		{"unknown endpoint", "/envoy", []string{"X-Original-URI", "/api"}, 404},
		{"root", "/", nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.do("GET", base+tc.path, "", tc.hdr...)
			wantJSONError(t, resp, body, tc.status)
		})
	}
}

// TestDecisionEndpointStoreFailure follows store.on_error.
func TestDecisionEndpointStoreFailure(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		onError string
		status  map[string]int
	}{{"allow", map[string]int{"nginx": 200, "traefik": 200}}, {"deny", map[string]int{"nginx": 503, "traefik": 503}}} {
		t.Run(tc.onError, func(t *testing.T) {
			t.Parallel()
			cfg := decisionConfig("127.0.0.1", "") + fmt.Sprintf("store: { backend: redis, on_error: %s, redis: { addrs: [%q], timeout: 100ms } }\n", tc.onError, dead)
			h := startGateway(t, cfg)
			for endpoint, want := range tc.status {
				resp, body := h.decide(decisionCall{endpoint: endpoint, uri: "/api", client: "203.0.113.40"})
				wantStatus(t, resp, body, want)
			}
			if got := metric(t, h, `sluice_decisions_total{decision="error",policy="per-ip"}`); got != "2" {
				t.Fatalf("error decisions %q, want 2", got)
			}
		})
	}
}

// TestDecisionEndpointOff checks that nothing listens unless configured.
func TestDecisionEndpointOff(t *testing.T) {
	t.Parallel()
	h := startGateway(t, strings.Replace(decisionConfig("", ""), `decision: { listen: "127.0.0.1:0", trusted_proxies: [] }`, "", 1))
	if a := h.g.DecisionAddr(); a != "" {
		t.Fatalf("DecisionAddr %q with decision.listen unset", a)
	}
}

// TestIntegrationConfigErrors names the field, and the value, of each bad
// decision and rls setting.
func TestIntegrationConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := gateway.Load(writeConfig(t, `
policies:
  per-ip: { limit: 3, window: 1m }
routes:
  - { name: api, match: { path_prefix: / }, respond: { status: 200 }, policies: [per-ip] }
decision: { listen: "nope", trusted_proxies: ["10.0.0.0/33"] }
rls:
  listen: "127.0.0.1:99999"
  domains:
    - domain: edge
      descriptors:
        - { key: remote_address, policy: per-ip }
        - { key: remote_address, policy: per-ip }
        - { key: "", policy: nope }
        - { key: path, value: /a }
        - key: user
          descriptors:
            - { key: plan, policy: missing }
    - domain: edge
    - { domain: "" }
`), []string{}, nil)
	if err == nil {
		t.Fatal("Load: no error")
	}
	for _, want := range []string{
		`decision.listen: must be host:port, got "nope"`,
		`decision.trusted_proxies[0]: "10.0.0.0/33" is neither a CIDR nor an address`,
		`rls.listen: bad port "99999"`,
		`rls.domains[0].descriptors[1]: duplicate descriptor key "remote_address" value ""`,
		`rls.domains[0].descriptors[2].key: must not be empty`,
		`rls.domains[0].descriptors[2].policy: unknown policy "nope"`,
		`rls.domains[0].descriptors[3]: needs a policy or nested descriptors`,
		`rls.domains[0].descriptors[4].descriptors[0].policy: unknown policy "missing"`,
		`rls.domains[1].domain: duplicate domain "edge"`,
		`rls.domains[2].domain: must not be empty`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
