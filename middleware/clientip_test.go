package middleware_test

import (
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/middleware"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	r, err := middleware.NewIPResolver([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48"}, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		headers    map[string][]string
		want       string
	}{
		{"untrusted peer", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"spoofed XFF from an untrusted peer", "203.0.113.5:4000", map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.5"},
		{"spoofed X-Real-IP from an untrusted peer", "203.0.113.5:4000", map[string][]string{"X-Real-IP": {"1.2.3.4"}}, "203.0.113.5"},
		{"trusted proxy", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"chain through trusted proxies", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.9.9.9"}}, "198.51.100.7"},
		{"chain over several lines", "192.0.2.1:80", map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.8", "10.0.0.1"}}, "198.51.100.8"},
		{"client spoofs the left end", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"10.0.0.1, 198.51.100.7"}}, "198.51.100.7"},
		{"all trusted", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"10.0.0.9, 10.0.0.1"}}, "10.0.0.9"},
		{"garbage stops the walk", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"6.6.6.6, not-an-ip, 10.0.0.1"}}, "10.0.0.1"},
		{"ports and brackets", "10.1.2.3:80", map[string][]string{"X-Forwarded-For": {"[2001:db8::1]:443"}}, "2001:db8::/64"},
		{"X-Real-IP from a trusted proxy", "10.1.2.3:80", map[string][]string{"X-Real-IP": {"198.51.100.9"}}, "198.51.100.9"},
		{"IPv6 peer grouped by /64", "[2001:db8:1:2:aaaa::1]:5555", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6 peer", "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
		{"trusted IPv6 proxy", "[2001:db8:ffff::1]:80", map[string][]string{"X-Forwarded-For": {"2001:db8:5:6:7::9"}}, "2001:db8:5:6::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tc.peer
			for k, vs := range tc.headers {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			if got := r.Key(r.ClientIP(req)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIPResolverRejectsBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := middleware.NewIPResolver([]string{"not-a-cidr"}, 64); err == nil || !strings.Contains(err.Error(), "trusted_proxies[0]") {
		t.Fatalf("err %v, want one naming trusted_proxies[0]", err)
	}
	if _, err := middleware.NewIPResolver(nil, 129); err == nil {
		t.Fatal("ipv6 prefix 129: no error")
	}
}

func TestParseKeySource(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"ip", "header:X-Api-Key", "query:k", "cookie:session", "method", "path", "host", "route", "header:X-Api-Key + route", "ip+method+path"} {
		if _, err := middleware.ParseKeySource(ok, &middleware.IPResolver{}); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "header:", "body:x", "ip:x", "header", "ip + ", "+", "route + jwt:sub"} {
		if _, err := middleware.ParseKeySource(bad, &middleware.IPResolver{}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestNoGinDependency keeps package middleware free of Gin.
func TestNoGinDependency(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/sluice-gateway/sluice/middleware").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	if strings.Contains(string(out), "gin-gonic") {
		t.Fatal("package middleware depends on Gin")
	}
}

// TestKeyParts: what each part of a composite key yields, and that a
// composite needs every part.
func TestKeyParts(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest("PUT", "http://API.Example.com:8443/v1/a%2Fb?x=1", nil)
	req.RemoteAddr = "192.0.2.1:5"
	req.Header.Set("X-Api-Key", "k|1")
	for spec, want := range map[string]string{
		"method":                   "method:PUT",
		"path":                     "path:/v1/a%2Fb",
		"host":                     "host:api.example.com",
		"header:X-Api-Key + route": "header:x-api-key:k%7C1|route:orders",
		"ip + method + host":       "192.0.2.1|method:PUT|host:api.example.com",
	} {
		src, err := middleware.ParseKey(spec, &middleware.IPResolver{}, "orders")
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := src(req); !ok || got != want {
			t.Errorf("%s: %q %v, want %q", spec, got, ok, want)
		}
	}
	v6 := httptest.NewRequest("GET", "http://[2001:DB8::1]:80/", nil)
	if got, _ := middleware.Host()(v6); got != "host:[2001:db8::1]" {
		t.Errorf("IPv6 host: %q", got)
	}
	// A part absent: the composite is absent; a part repeated: ambiguous.
	c := middleware.Composite(middleware.Header("X-Api-Key"), middleware.Query("t"))
	if k, ok := c(req); ok || k != "" {
		t.Errorf("a missing part: %q %v, want absent", k, ok)
	}
	req.URL.RawQuery = "t=1&t=2"
	if k, ok := c(req); !ok || k != "" {
		t.Errorf("a repeated part: %q %v, want ambiguous", k, ok)
	}
	// Outside a ServeMux, route without a name is absent.
	if _, ok := middleware.Route("")(req); ok {
		t.Error("Route(\"\") outside a ServeMux is present")
	}
}
