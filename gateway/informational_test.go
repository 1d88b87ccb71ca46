package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"testing"
)

// TestInformationalResponsesReachTheClient: an upstream's 103 Early Hints
// reaches the client with its own headers, before the final answer, and
// the final answer keeps the gateway's RateLimit headers, on both
// transports.
func TestInformationalResponsesReachTheClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Set("X-Final", "yes")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "final")
		}))
		t.Cleanup(up.Close)
		h := startGateway(t, withTransport(transport, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  per-ip: { limit: 10, window: 1m }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: { url: %q }
    policies: [per-ip]
`, up.URL)))
		var mu sync.Mutex
		var hints []textproto.MIMEHeader
		var codes []int
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			codes = append(codes, code)
			hints = append(hints, header)
			return nil
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", h.proxy+"/page", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "final" || resp.Header.Get("X-Final") != "yes" {
			t.Fatalf("final answer %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp.Header.Get("RateLimit") == "" || resp.Header.Get("RateLimit-Policy") == "" {
			t.Fatalf("the final answer lost the RateLimit headers: %v", resp.Header)
		}
		if resp.Header.Get("Link") != "" {
			t.Fatalf("the hint's Link header leaked into the final answer: %v", resp.Header)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(codes) != 1 || codes[0] != http.StatusEarlyHints || hints[0].Get("Link") != "</app.css>; rel=preload" {
			t.Fatalf("informational answers %v %v, want one 103 with its Link", codes, hints)
		}
	})
}
