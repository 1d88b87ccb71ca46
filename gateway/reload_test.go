package gateway_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

func reloadConfig(upstream string, limit int, extraRoute string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  per-ip: { limit: %d, window: 1m }
routes:
  - name: hello
    match: { path_prefix: /hello }
    respond: { body: "hello\n" }
    policies: [per-ip]
  - name: slow
    match: { path_prefix: /slow }
    upstream: { url: %q }
%s`, limit, upstream, extraRoute)
}

func metric(t *testing.T, h *harness, series string) string {
	t.Helper()
	_, body := h.do("GET", h.admin+"/metrics", "")
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}

func TestReload(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	h := startGateway(t, reloadConfig(up.URL, 3, ""))
	resp, _ := h.get("/hello")
	if got := resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=3;w=60` {
		t.Fatalf("before reload: %q", got)
	}

	// A request in flight during the reload finishes normally.
	inflight := make(chan string, 1)
	go func() {
		resp, err := h.client.Get(h.proxy + "/slow?ms=300")
		if err != nil {
			inflight <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	time.Sleep(50 * time.Millisecond) // let the request reach the upstream

	if err := os.WriteFile(h.path, []byte(reloadConfig(up.URL, 5, `  - { name: added, match: { path_prefix: /added }, respond: { body: "added\n" } }`)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.g.Reload(); err != nil {
		t.Fatalf("valid reload: %v", err)
	}
	resp, _ = h.get("/hello")
	if got := resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=5;w=60` {
		t.Fatalf("after reload: %q", got)
	}
	if got := resp.Header.Get("X-RateLimit-Remaining"); got != "3" {
		t.Fatalf("remaining %s after reload, want 3: the store (and its counts) survives a reload that keeps its config", got)
	}
	if _, body := h.get("/added"); body != "added\n" {
		t.Fatalf("new route answered %q", body)
	}
	if got := <-inflight; got != "200 late" {
		t.Fatalf("in-flight request: %s", got)
	}

	if err := os.WriteFile(h.path, []byte("policies: { per-ip: { limit: -1 } }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.g.Reload(); err == nil || !strings.Contains(err.Error(), "policies.per-ip.limit") {
		t.Fatalf("invalid reload: %v", err)
	}
	resp, _ = h.get("/hello")
	if got := resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=5;w=60` {
		t.Fatalf("after an invalid reload the old config must stay: %q", got)
	}
	if got := metric(t, h, `sluice_config_reloads_total{result="error"}`); got != "1" {
		t.Fatalf("reload errors %q, want 1", got)
	}
	if got := metric(t, h, `sluice_config_reloads_total{result="success"}`); got != "1" {
		t.Fatalf("reload successes %q, want 1", got)
	}
}

func TestReloadOnFileChange(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	path := writeConfig(t, reloadConfig(up.URL, 3, ""))
	h := startGatewayWith(t, gateway.Options{ConfigPath: path, Watch: true})
	if err := os.WriteFile(path, []byte(reloadConfig(up.URL, 7, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := h.get("/hello")
		if resp.Header.Get("RateLimit-Policy") == `"per-ip";q=7;w=60` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not reload within 5s of the file changing")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
