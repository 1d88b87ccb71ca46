package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestH2CUpgradeIsNotTunnelled: "Upgrade: h2c" never reaches the upstream.
// An upstream that speaks h2c (Go's h2c handler, Apache's mod_http2,
// Envoy) would answer 101 and then take any number of HTTP/2 requests, to
// any path, over the one tunnel the gateway counted once: every policy and
// route walked around (h2c smuggling). The request is served as the plain
// HTTP/1.1 request it also is, and counted; WebSocket upgrades still pass.
func TestH2CUpgradeIsNotTunnelled(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		var upgrades atomic.Int64
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") == "" {
				fmt.Fprint(w, "plain")
				return
			}
			upgrades.Add(1)
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
			_ = rw.Flush()
		}))
		t.Cleanup(up.Close)
		h := startGateway(t, withTransport(transport, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  p: { limit: 4, window: 1m }
routes:
  - { name: r, match: { path_prefix: / }, upstream: { url: %q }, policies: [p] }
`, up.URL)))
		addr := strings.TrimPrefix(h.proxy, "http://")
		for i, upgrade := range []string{"h2c", "H2C", "websocket, h2c"} {
			resp, body := rawRequest(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+upgrade+"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
			if resp.StatusCode != http.StatusOK || body != "plain" {
				t.Errorf("Upgrade: %s: %d %q, want 200 \"plain\" (no tunnel)", upgrade, resp.StatusCode, body)
			}
			if got, want := resp.Header.Get("X-Ratelimit-Remaining"), fmt.Sprint(3-i); got != want {
				t.Errorf("Upgrade: %s: remaining %q, want %s", upgrade, got, want)
			}
		}
		if n := upgrades.Load(); n != 0 {
			t.Fatalf("the upstream saw %d h2c upgrade requests, want 0", n)
		}
		resp, _ := rawRequest(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusSwitchingProtocols || upgrades.Load() != 1 {
			t.Fatalf("websocket upgrade: %d (upstream saw %d upgrades), want 101 and 1", resp.StatusCode, upgrades.Load())
		}
	})
}
