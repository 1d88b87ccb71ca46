package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

// TestEveryV1RouteNeedsTheToken walks the registered routes, so a new route
// cannot forget authentication.
func TestEveryV1RouteNeedsTheToken(t *testing.T) {
	t.Parallel()
	h := startGateway(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	wildcard := regexp.MustCompile(`\{[^}]+\}`)
	routes := gateway.AdminRoutes()
	if len(routes) < 10 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt, " ")
		path = wildcard.ReplaceAllString(path, "per-ip")
		for _, auth := range []string{"", "Bearer ", "Bearer secre", "Bearer secret2", "bearer secret", "Basic secret"} {
			var hdr []string
			if auth != "" {
				hdr = []string{"Authorization", auth}
			}
			resp, body := h.do(method, h.admin+path, `{"value":1}`, hdr...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: %d, want 401; %s", method, path, auth, resp.StatusCode, body)
			}
		}
		resp, _ := h.do(method, h.admin+path, `{"value":1}`, "Authorization", "Bearer secret")
		if resp.StatusCode == http.StatusUnauthorized {
			t.Errorf("%s %s with the token: 401", method, path)
		}
	}
}

// TestNoSecretsInLogs runs a gateway through start, traffic, store
// failures, a bad reload and shutdown, and checks that neither the admin
// token (configured, or generated for a loopback listener) nor the Redis
// password reaches a log line.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	for _, generated := range []bool{false, true} {
		t.Run(fmt.Sprintf("generated=%v", generated), func(t *testing.T) {
			t.Parallel()
			token, password := "tok-9f8e7d6c5b4a", "pw-0a1b2c3d4e5f"
			if generated {
				token = ""
			}
			cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", fmt.Sprintf(
				`{ backend: redis, redis: { addrs: ["127.0.0.1:1"], password: %q, timeout: 50ms } }`, password)),
				`token: "secret"`, fmt.Sprintf("token: %q", token), 1)
			cfg = strings.Replace(cfg, "log: { access: false }", "log: { level: debug }", 1)
			var logs logBuffer
			h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), Environ: []string{}, LogOutput: &logs, TokenDir: filepath.Join(t.TempDir(), "run")})
			token = h.g.AdminToken()
			h.token = token
			h.get("/limited/x")
			h.get("/down")
			if resp, body := h.adminDo("GET", "/v1/policies", ""); resp.StatusCode != 200 {
				t.Fatalf("the admin token in force does not work: %d %s", resp.StatusCode, body)
			}
			h.adminDo("GET", "/v1/policies/per-ip/keys", "")
			h.adminDo("POST", "/v1/counters/x/increment", "")
			h.do("GET", h.admin+"/v1/policies", "", "Authorization", "Bearer "+token+"x")
			h.do("GET", h.admin+"/readyz", "")
			_ = h.g.Reload() // valid
			if err := os.WriteFile(h.path, []byte("admin: { listen: 0.0.0.0:0 }\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_ = h.g.Reload() // invalid: the old config stays
			time.Sleep(10 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = h.g.Shutdown(ctx)
			out := logs.String()
			if len(out) < 200 {
				t.Fatalf("too few logs to judge: %q", out)
			}
			for _, secret := range []string{token, password} {
				if strings.Contains(out, secret) {
					t.Fatalf("a log line holds the secret %q:\n%s", secret, out)
				}
			}
		})
	}
}

// TestSpoofedAddressesShareOneLimit: an untrusted client that rotates
// X-Forwarded-For and X-Real-IP neither splits nor dodges its limit.
func TestSpoofedAddressesShareOneLimit(t *testing.T) {
	t.Parallel()
	h := startGateway(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	ok := 0
	for i := range 50 {
		resp, _ := h.get("/limited/x", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i), "X-Real-IP", fmt.Sprintf("203.0.113.%d", i))
		switch resp.StatusCode {
		case 502: // the upstream is down; the limiter admitted the request
			ok++
		case 429:
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if ok != 3 {
		t.Fatalf("a client rotating spoofed addresses got %d requests through, want 3", ok)
	}
}

// TestSlowClientsAreCut: a client that trickles its headers is
// disconnected after ReadHeaderTimeout, on both listeners.
func TestSlowClientsAreCut(t *testing.T) {
	t.Parallel()
	h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }")),
		ReadHeaderTimeout: 300 * time.Millisecond})
	for _, addr := range []string{h.g.ProxyAddr(), h.g.AdminAddr()} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for time.Since(start) < 5*time.Second {
			if _, err := conn.Write([]byte("a")); err != nil {
				break
			}
			buf := make([]byte, 512)
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := conn.Read(buf); n > 0 || (err != nil && !isTimeout(err)) {
				break // an answer (408/400) or a closed connection
			}
		}
		conn.Close()
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s kept a slow client for %v with a 300ms header timeout", addr, took)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
