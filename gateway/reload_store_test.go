package gateway_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func storeReloadConfig(store string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: %s
policies:
  per-ip: { limit: 10, window: 1h }
routes:
  - name: hello
    match: { path_prefix: / }
    respond: { body: "hello\n" }
    policies: [per-ip]
`, store)
}

// TestReloadKeepsTheMemoryStore: reloads that touch store settings keep the
// memory store's counts and counters; one that changes the backend is
// refused, counted as a failure, and leaves the old config and its state in
// force.
func TestReloadKeepsTheMemoryStore(t *testing.T) {
	t.Parallel()
	h := startGateway(t, storeReloadConfig("{ backend: memory }"))
	for range 3 {
		h.get("/")
	}
	resp, body := h.adminDo("PUT", "/v1/counters/seats", `{"value":5}`)
	wantStatus(t, resp, body, 200)
	check := func(when string) {
		t.Helper()
		resp, body := h.adminDo("GET", "/v1/policies/per-ip/keys/127.0.0.1", "")
		wantStatus(t, resp, body, 200)
		if u := decode[map[string]any](t, body); u["count"] != float64(3) {
			t.Fatalf("%s: per-ip count %v, want 3", when, u["count"])
		}
		resp, body = h.adminDo("GET", "/v1/counters/seats", "")
		if resp.StatusCode != 200 || decode[map[string]any](t, body)["value"] != float64(5) {
			t.Fatalf("%s: counter seats: %d %s, want 200 with value 5", when, resp.StatusCode, body)
		}
	}
	reload := func(store string) error {
		t.Helper()
		if err := os.WriteFile(h.path, []byte(storeReloadConfig(store)), 0o600); err != nil {
			t.Fatal(err)
		}
		return h.g.Reload()
	}
	for i, store := range []string{
		"{ backend: memory, on_error: deny }",
		"{ backend: memory, on_error: deny, redis: { timeout: 250ms, prefix: other- } }",
		"{ backend: memory, on_error: deny, memory: { max_keys: 5000 } }",
	} {
		if err := reload(store); err != nil {
			t.Fatalf("reload %d (%s): %v", i+1, store, err)
		}
		check(fmt.Sprintf("after reload %d (%s)", i+1, store))
	}
	err := reload(`{ backend: redis, redis: { addrs: ["127.0.0.1:1"] } }`)
	if err == nil || !strings.Contains(err.Error(), "store.backend") || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a reload to another backend: %v, want an error naming store.backend", err)
	}
	check("after a refused backend change")
	resp, _ = h.get("/")
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "6" {
		t.Fatalf("after a refused backend change: %d, remaining %q, want 200 and 6", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
	if got := metric(t, h, `sluice_config_reloads_total{result="success"}`); got != "3" {
		t.Fatalf("reload successes %q, want 3", got)
	}
	if got := metric(t, h, `sluice_config_reloads_total{result="error"}`); got != "1" {
		t.Fatalf("reload errors %q, want 1", got)
	}
}
