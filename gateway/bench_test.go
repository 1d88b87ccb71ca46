package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkProxy sends requests through the in-process gateway to an
// upstream on loopback, with no policy and with one sliding_window policy on
// the memory store; the client runs in the same process.
//
//	go test ./gateway -run '^$' -bench Proxy -cpuprofile cpu.out
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the upstream\n")
	}))
	defer up.Close()
	for _, tc := range []struct{ name, policies, routePolicies string }{
		{"no-policy", "", ""},
		{"memory-sliding_window", "policies: { p: { limit: 1000000000, window: 1m } }\n", ", policies: [p]"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\", token: x }\nlog: { access: false }\n" + tc.policies +
				"routes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"" + up.URL + "\" }" + tc.routePolicies + " }\n"
			h := startGateway(b, cfg)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(h.proxy + "/x")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
