package middleware_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/middleware"
)

// FuzzClientIP feeds hostile peers and forwarding headers to the resolver:
// it must never panic, must key an untrusted peer by the peer alone, and
// must return a parseable key or none.
func FuzzClientIP(f *testing.F) {
	f.Add("10.1.2.3:80", "6.6.6.6, 198.51.100.7, 10.9.9.9", "")
	f.Add("203.0.113.5:4000", "1.2.3.4", "5.6.7.8")
	f.Add("[2001:db8::1]:443", "[2001:db8::2]:1, garbage", "")
	f.Add("10.0.0.1:1", ",,, ,", "::ffff:1.2.3.4")
	f.Add("not an addr", "\xff\xfe", "\x00")
	trusted, err := middleware.NewIPResolver([]string{"10.0.0.0/8", "2001:db8::/32"}, 64)
	if err != nil {
		f.Fatal(err)
	}
	untrusting := &middleware.IPResolver{}
	f.Fuzz(func(t *testing.T, peer, xff, realIP string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = peer
		for line := range strings.SplitSeq(xff, "\n") {
			req.Header.Add("X-Forwarded-For", line)
		}
		req.Header.Set("X-Real-IP", realIP)
		for _, r := range []*middleware.IPResolver{trusted, untrusting} {
			key := r.Key(r.ClientIP(req))
			if key == "" {
				continue
			}
			if _, err := netip.ParseAddr(key); err != nil {
				if _, err := netip.ParsePrefix(key); err != nil {
					t.Fatalf("key %q is neither an address nor a prefix", key)
				}
			}
		}
		bare := httptest.NewRequest("GET", "/", nil)
		bare.RemoteAddr = peer
		if got, want := untrusting.Key(untrusting.ClientIP(req)), untrusting.Key(untrusting.ClientIP(bare)); got != want {
			t.Fatalf("headers changed the key of an untrusted peer: %q, want %q", got, want)
		}
	})
}

// FuzzParseKeySource: any spec either parses or errors; none panics.
func FuzzParseKeySource(f *testing.F) {
	for _, s := range []string{"ip", "header:X-Api-Key", "query:", "cookie:a:b", "header:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		src, err := middleware.ParseKeySource(spec, &middleware.IPResolver{})
		if err == nil {
			req := httptest.NewRequest("GET", "/?a=b", nil)
			req.RemoteAddr = "192.0.2.1:1"
			src(req)
		}
	})
}
