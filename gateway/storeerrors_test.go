package gateway_test

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// TestRedisErrorReplyIsStoreError: a Redis that refuses the gateway's
// password (WRONGPASS) is a failing store for every algorithm: with
// on_error: deny every request is 503, each one counts in
// sluice_store_errors_total, and /readyz is 503. (sliding_window used to
// admit everything: the pipeline's error was dropped.)
func TestRedisErrorReplyIsStoreError(t *testing.T) {
	t.Parallel()
	limitertest.RedisAddr(t) // the real-Redis switch
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--requirepass", "the-right-one")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h := startGateway(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: { backend: redis, on_error: deny, redis: { addrs: ["127.0.0.1:%d"], password: wrong, timeout: 500ms } }
policies:
  sw: { limit: 10, window: 1m, algorithm: sliding_window }
  sl: { limit: 10, window: 1m, algorithm: sliding_log }
  fw: { limit: 10, window: 1m, algorithm: fixed_window }
  gc: { limit: 10, window: 1m, algorithm: gcra }
routes:
  - { name: sw, match: { path_prefix: /sw }, respond: { status: 200 }, policies: [sw] }
  - { name: sl, match: { path_prefix: /sl }, respond: { status: 200 }, policies: [sl] }
  - { name: fw, match: { path_prefix: /fw }, respond: { status: 200 }, policies: [fw] }
  - { name: gc, match: { path_prefix: /gc }, respond: { status: 200 }, policies: [gc] }
`, port))
	errs := func() int {
		n, _ := strconv.Atoi(metric(t, h, "sluice_store_errors_total"))
		return n
	}
	before := errs()
	for _, route := range []string{"/sw", "/sl", "/fw", "/gc"} {
		for i := range 15 {
			resp, body := h.get(route)
			if resp.StatusCode != 503 {
				t.Fatalf("%s request %d with a wrong Redis password: %d, want 503; %s", route, i+1, resp.StatusCode, body)
			}
		}
	}
	if got := errs() - before; got != 60 {
		t.Fatalf("sluice_store_errors_total grew by %d, want 60 (one per request)", got)
	}
	if resp, body := h.do("GET", h.admin+"/readyz", ""); resp.StatusCode != 503 {
		t.Fatalf("/readyz: %d, want 503; %s", resp.StatusCode, body)
	}
}
