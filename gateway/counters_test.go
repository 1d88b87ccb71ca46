package gateway_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/internal/faultproxy"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// TestCounterIdempotency: writes with an Idempotency-Key on the memory
// store, in memory and in a file.
func TestCounterIdempotency(t *testing.T) {
	t.Parallel()
	for name, store := range map[string]string{
		"memory":  "{ backend: memory }",
		"durable": fmt.Sprintf("{ backend: memory, memory: { path: %q } }", filepath.Join(t.TempDir(), "sluice.db")),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testCounterIdempotency(t, startGateway(t, proxyConfig("http://127.0.0.1:1", store)))
		})
	}
}

func testCounterIdempotency(t *testing.T, h *harness) {
	send := func(method, path, body, key string) (*http.Response, string) {
		t.Helper()
		hdr := []string{"Authorization", "Bearer " + h.token}
		if key != "" {
			hdr = append(hdr, "Idempotency-Key", key)
		}
		return h.do(method, h.admin+path, body, hdr...)
	}
	value := func(name string) string {
		t.Helper()
		resp, body := h.adminDo("GET", "/v1/counters/"+name, "")
		if resp.StatusCode == 404 {
			return "none"
		}
		return fmt.Sprint(decode[map[string]any](t, body)["value"])
	}
	type step struct {
		method, path, body, key string
		status                  int
		replayed                bool
		want                    string // the counter's value afterwards
	}
	for i, s := range []step{
		{"POST", "/v1/counters/jobs/increment", `{"by":2}`, "a1", 200, false, "2"},
		{"POST", "/v1/counters/jobs/increment", `{"by":2}`, "a1", 200, true, "2"},
		{"POST", "/v1/counters/jobs/increment", `{"by":2}`, `"a1"`, 200, true, "2"}, // the draft's sf-string form
		{"POST", "/v1/counters/jobs/increment", `{"by":3}`, "a1", 422, false, "2"},
		{"POST", "/v1/counters/jobs/decrement", `{"by":2}`, "a1", 422, false, "2"},
		{"POST", "/v1/counters/jobs/increment", ``, "b1", 200, false, "3"},
		{"POST", "/v1/counters/jobs/increment", `{"by":1}`, "b1", 200, true, "3"}, // the same increment, spelled otherwise
		{"POST", "/v1/counters/jobs/increment", ``, "", 200, false, "4"},
		{"POST", "/v1/counters/jobs/increment", ``, "", 200, false, "5"},
		{"PUT", "/v1/counters/seats", `{"value":1,"max":1}`, "c1", 200, false, "1"},
		{"POST", "/v1/counters/seats/increment", ``, "c2", 409, false, "1"},
		{"PUT", "/v1/counters/seats", `{"value":1,"max":10}`, "", 200, false, "1"},
		{"POST", "/v1/counters/seats/increment", ``, "c2", 409, true, "1"},
		{"PUT", "/v1/counters/seats", `{"value":1,"max":1}`, "c1", 200, true, "1"},
		{"DELETE", "/v1/counters/seats", ``, "d1", 204, false, "none"},
		{"PUT", "/v1/counters/seats", `{"value":7}`, "", 200, false, "7"},
		{"DELETE", "/v1/counters/seats", ``, "d1", 204, true, "7"},
		{"POST", "/v1/counters/seats/increment", ``, "d1", 200, false, "8"}, // keys are scoped to their counter...
	} {
		if s.path == "/v1/counters/seats/increment" && s.key == "d1" {
			s = step{"POST", "/v1/counters/jobs/increment", ``, "d1", 200, false, "6"} // ...so d1 is new on jobs
		}
		resp, body := send(s.method, s.path, s.body, s.key)
		if resp.StatusCode != s.status {
			t.Fatalf("step %d %s %s key %q: %d %s, want %d", i, s.method, s.path, s.key, resp.StatusCode, body, s.status)
		}
		if got := resp.Header.Get(gateway.ReplayedHeader) == "true"; got != s.replayed {
			t.Fatalf("step %d: replayed %v, want %v", i, got, s.replayed)
		}
		if s.status == 422 {
			wantJSONError(t, resp, body, 422)
		}
		name := strings.Split(strings.TrimPrefix(s.path, "/v1/counters/"), "/")[0]
		if got := value(name); got != s.want {
			t.Fatalf("step %d %s %s key %q: %s is %s, want %s", i, s.method, s.path, s.key, name, got, s.want)
		}
	}
	// A replay answers exactly what the first answer said.
	_, first := send("POST", "/v1/counters/exact/increment", `{"by":9007199254740993}`, "e1")
	send("POST", "/v1/counters/exact/increment", ``, "")
	_, again := send("POST", "/v1/counters/exact/increment", `{"by":9007199254740993}`, "e1")
	if first != again || !strings.Contains(first, `"value":9007199254740993`) {
		t.Fatalf("replay %s, first answer %s", again, first)
	}
	for _, bad := range []string{strings.Repeat("k", 256), "tab\there", `"unterminated`} {
		resp, body := send("POST", "/v1/counters/jobs/increment", ``, bad)
		wantJSONError(t, resp, body, 400)
	}
	req, _ := http.NewRequest("POST", h.admin+"/v1/counters/jobs/increment", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Add("Idempotency-Key", "x1")
	req.Header.Add("Idempotency-Key", "x2")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("two Idempotency-Keys: %d, want 400", resp.StatusCode)
	}
}

// TestIdempotencyFleetOnRedis: three gateways on one Redis; the first
// reaches it through a proxy that can delay every byte past the store's
// timeout. Each increment is sent twice with one Idempotency-Key, to two
// different gateways, one of the two under the injected timeout (which
// answers 503 although Redis applies the increment later). The counter
// ends at the number of distinct keys.
func TestIdempotencyFleetOnRedis(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	fp, err := faultproxy.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fp.Close)
	store := redisStoreConfig(addr) // one prefix: one fleet
	slowStore := strings.Replace(withRedisTimeout(store, "100ms"), addr, fp.Addr(), 1)
	slow := startGateway(t, proxyConfig("http://127.0.0.1:1", slowStore))
	healthy := []*harness{startGateway(t, proxyConfig("http://127.0.0.1:1", store)), startGateway(t, proxyConfig("http://127.0.0.1:1", store))}

	send := func(h *harness, key string) (int, bool) {
		resp, body := h.do("POST", h.admin+"/v1/counters/retried/increment", "", "Authorization", "Bearer secret", "Idempotency-Key", key)
		if resp.StatusCode != 200 && resp.StatusCode != 503 {
			t.Fatalf("increment: %d %s", resp.StatusCode, body)
		}
		return resp.StatusCode, resp.Header.Get(gateway.ReplayedHeader) == "true"
	}
	// A healthy gateway on a loaded machine may miss its deadline too; a
	// client retries on 503, as it should with an Idempotency-Key.
	sendHealthy := func(h *harness, key string) (int, bool) {
		for range 4 {
			if status, replayed := send(h, key); status == 200 {
				return status, replayed
			}
		}
		return send(h, key)
	}
	const keys = 40
	timeouts, replays := 0, 0
	for i := range keys {
		key := fmt.Sprintf("job-%d", i)
		other := healthy[i%2]
		if i%2 == 0 {
			// The slow gateway first: Redis applies the increment after
			// the gateway has answered 503; the client retries elsewhere.
			fp.SetLatency(300 * time.Millisecond)
			if status, _ := send(slow, key); status == 503 {
				timeouts++
			}
			fp.SetLatency(0)
			if status, replayed := sendHealthy(other, key); status != 200 {
				t.Fatalf("the retry of %s: %d", key, status)
			} else if replayed {
				replays++
			}
			continue
		}
		// A healthy gateway first; the answer is lost and the client
		// retries on the slow gateway, which is fast again by then.
		if status, _ := sendHealthy(other, key); status != 200 {
			t.Fatalf("%s: %d", key, status)
		}
		if status, replayed := send(slow, key); status == 200 && !replayed {
			t.Fatalf("the retry of %s counted again", key)
		} else if replayed {
			replays++
		}
	}
	// Wait for the proxy to deliver every delayed increment.
	for deadline := time.Now().Add(10 * time.Second); fp.Held() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the proxy still holds bytes after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if timeouts != keys/2 {
		t.Fatalf("%d of %d increments through the slow proxy timed out; the test needs all", timeouts, keys/2)
	}
	for _, h := range append(healthy, slow) {
		// The slow gateway's 100ms timeout may still fail a read on a
		// loaded machine, and twenty timeouts may have opened its breaker:
		// a client reads again until it is answered.
		resp, body := h.adminDo("GET", "/v1/counters/retried", "")
		for deadline := time.Now().Add(10 * time.Second); resp.StatusCode == 503 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			resp, body = h.adminDo("GET", "/v1/counters/retried", "")
		}
		wantStatus(t, resp, body, 200)
		if v := decode[map[string]any](t, body)["value"]; v != float64(keys) {
			t.Fatalf("%d keys, each sent twice (%d timeouts, %d replays): value %v, want %d", keys, timeouts, replays, v, keys)
		}
	}
	t.Logf("%d keys sent twice: %d timeouts, %d replays", keys, timeouts, replays)
}

// scopeConfig has one token per scope, a counters token limited to jobs*,
// and one read from a file.
func scopeConfig(t *testing.T) string {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"), `admin: { listen: "127.0.0.1:0", token: "secret" }`, fmt.Sprintf(`admin:
  listen: "127.0.0.1:0"
  token: "secret"
  tokens:
    - { name: reader, token: tok-read, scopes: [read] }
    - { name: app, token: tok-counters, scopes: [counters] }
    - { name: jobs-app, token: tok-jobs, scopes: [counters, read], counters: ["jobs", "jobs-*"] }
    - { name: ops, token: tok-keys, scopes: [keys] }
    - { name: root, token_file: %q, scopes: [admin] }
`, file), 1)
}

// TestScopes walks every /v1 route with every scope: a token outside its
// scope gets 403 naming the scope, inside it anything but 401 and 403.
func TestScopes(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	h := startGatewayLogs(t, scopeConfig(t), &logs)
	wildcard := regexp.MustCompile(`\{[^}]+\}`)
	// The scope each write route needs; every GET needs read, and any
	// other route admin.
	writes := map[string]string{
		"PUT /v1/counters/{name}":                      "counters",
		"DELETE /v1/counters/{name}":                   "counters",
		"POST /v1/counters/{name}/increment":           "counters",
		"POST /v1/counters/{name}/decrement":           "counters",
		"DELETE /v1/policies/{policy}/keys/{key}":      "keys",
		"PUT /v1/policies/{policy}/overrides/{key}":    "keys",
		"DELETE /v1/policies/{policy}/overrides/{key}": "keys",
	}
	tokens := map[string][]string{ // token -> scopes
		"secret": {"admin"}, "tok-file-0123456789": {"admin"},
		"tok-read": {"read"}, "tok-counters": {"counters"}, "tok-jobs": {"counters", "read"}, "tok-keys": {"keys"},
	}
	checked := 0
	for _, rt := range gateway.AdminRoutes() {
		method, path, _ := strings.Cut(rt, " ")
		need, ok := writes[rt]
		if !ok {
			need = map[bool]string{true: "read", false: "admin"}[method == "GET"]
		}
		for _, counter := range []string{"jobs-1", "other"} {
			url := h.admin + wildcard.ReplaceAllStringFunc(path, func(w string) string {
				if w == "{name}" {
					return counter
				}
				return "per-ip"
			})
			for token, scopes := range tokens {
				allowed := false
				for _, s := range scopes {
					allowed = allowed || s == "admin" || s == need
				}
				if token == "tok-jobs" && need == "counters" && counter == "other" {
					allowed = false // outside its counters: [jobs, jobs-*]
				}
				resp, body := h.do(method, url, `{"value":1}`, "Authorization", "Bearer "+token)
				checked++
				switch {
				case allowed && (resp.StatusCode == 401 || resp.StatusCode == 403):
					t.Errorf("%s %s with %s (%v): %d %s, want it allowed", method, url, token, scopes, resp.StatusCode, body)
				case !allowed && resp.StatusCode != 403:
					t.Errorf("%s %s with %s (%v): %d %s, want 403", method, url, token, scopes, resp.StatusCode, body)
				case !allowed:
					e := decode[map[string]any](t, body)
					if e["scope"] != need || e["error"] == nil {
						t.Errorf("%s %s with %s: body %s, want the error and scope %q", method, url, token, body, need)
					}
				}
			}
		}
	}
	if routes := len(gateway.AdminRoutes()); checked != routes*2*len(tokens) || routes < 13 {
		t.Fatalf("checked %d requests over %d routes", checked, routes)
	}
	// Every write is logged with the token's name, never its value.
	resp, body := h.do("POST", h.admin+"/v1/counters/jobs/increment", "", "Authorization", "Bearer tok-jobs", "Idempotency-Key", "log-1")
	wantStatus(t, resp, body, 200)
	out := logs.String()
	if !regexp.MustCompile(`msg="admin write" token=jobs-app method=POST path=/v1/counters/jobs/increment status=200`).MatchString(out) {
		t.Fatalf("no admin write line for jobs-app in the logs:\n%s", out)
	}
	for _, secret := range []string{"tok-jobs", "tok-read", "tok-counters", "tok-keys", "tok-file-0123456789", "secret"} {
		if strings.Contains(out, secret) {
			t.Fatalf("token %q reached the logs", secret)
		}
	}
	if !strings.Contains(out, `msg="admin: forbidden" token=reader`) {
		t.Fatalf("no log line for a forbidden request:\n%s", out)
	}
}

func TestTokenConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := gateway.Load(writeConfig(t, `
admin:
  token: same
  tokens:
    - { name: "bad name", token: a, token_file: /x, scopes: [] }
    - { name: dup, token: same, scopes: [root] }
    - { name: dup, token_file: /no/such/file, scopes: [read], counters: ["jobs"] }
    - { name: ok, token: b, scopes: [counters], counters: ["job s"] }
`), []string{}, nil)
	for _, want := range []string{
		"admin.tokens[0].name: must match", "admin.tokens[0]: needs exactly one of token and token_file", "admin.tokens[0].scopes: must name",
		"admin.tokens[1]: the same token as another", "admin.tokens[1].scopes[0]: must be read, counters, keys or admin",
		"admin.tokens[2].name: duplicate", "admin.tokens[2].token_file: open /no/such/file", "admin.tokens[2].counters: applies to the counters scope",
		"admin.tokens[3].counters[0]",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

// TestDurableCountersRestart: with store.memory.path, counters and their
// history outlive the gateway.
func TestDurableCountersRestart(t *testing.T) {
	t.Parallel()
	cfg := proxyConfig("http://127.0.0.1:1", fmt.Sprintf("{ backend: memory, memory: { path: %q } }", filepath.Join(t.TempDir(), "sluice.db")))
	path := writeConfig(t, cfg)
	h := startGatewayWith(t, gateway.Options{ConfigPath: path})
	resp, body := h.adminDo("PUT", "/v1/counters/seats", `{"value":9223372036854775806,"min":-9223372036854775808,"max":9223372036854775807}`)
	wantStatus(t, resp, body, 200)
	resp, body = h.adminDo("POST", "/v1/counters/seats/increment", "")
	wantStatus(t, resp, body, 200)
	if err := h.g.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	h = startGatewayWith(t, gateway.Options{ConfigPath: path})
	resp, body = h.adminDo("GET", "/v1/counters/seats", "")
	wantStatus(t, resp, body, 200)
	if want := `{"name":"seats","value":9223372036854775807,"min":-9223372036854775808,"max":9223372036854775807}`; strings.TrimSpace(body) != want {
		t.Fatalf("after a restart: %s, want %s", body, want)
	}
	resp, body = h.adminDo("GET", "/v1/counters/seats/history", "")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, `"value":9223372036854775807`) {
		t.Fatalf("history after a restart: %s", body)
	}
}

// TestDurableCountersKill9: 50 clients increment one counter through the
// admin API of the sluice binary; it is killed with SIGKILL mid-stream and
// started again on the same file. Every acknowledged increment is there;
// those that got no answer may or may not be.
func TestDurableCountersKill9(t *testing.T) {
	t.Parallel()
	cfg := fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { format: json, access: false }
store: { backend: memory, memory: { path: %q } }
`, filepath.Join(t.TempDir(), "sluice.db"))
	path := writeConfig(t, cfg)
	p := startBinary(t, path)
	h := p.harness(t)
	var acked, doubt atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			client := newClient()
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", h.admin+"/v1/counters/jobs/increment", nil)
				req.Header.Set("Authorization", "Bearer secret")
				resp, err := client.Do(req)
				if err != nil {
					doubt.Add(1) // no answer: it may or may not have counted
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("increment: %d", resp.StatusCode)
					return
				}
				acked.Add(1)
			}
		})
	}
	for deadline := time.Now().Add(20 * time.Second); acked.Load() < 500; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d increments acknowledged in 20s", acked.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	h = startBinary(t, path).harness(t)
	resp, body := h.adminDo("GET", "/v1/counters/jobs", "")
	wantStatus(t, resp, body, 200)
	v := int64(decode[map[string]any](t, body)["value"].(float64))
	if v < acked.Load() || v > acked.Load()+doubt.Load() {
		t.Fatalf("after kill -9: value %d; acknowledged %d, in doubt %d", v, acked.Load(), doubt.Load())
	}
	t.Logf("kill -9 after %d acknowledged increments: value %d, %d in doubt, %d of them counted", acked.Load(), v, doubt.Load(), v-acked.Load())
}

// TestDurableCountersReload: a reload that changes other store.memory
// fields keeps the store that holds the file, and its counters.
func TestDurableCountersReload(t *testing.T) {
	t.Parallel()
	cfg := proxyConfig("http://127.0.0.1:1", fmt.Sprintf("{ backend: memory, memory: { path: %q } }", filepath.Join(t.TempDir(), "sluice.db")))
	h := startGateway(t, cfg)
	resp, body := h.adminDo("POST", "/v1/counters/jobs/increment", "")
	wantStatus(t, resp, body, 200)
	if err := os.WriteFile(h.path, []byte(strings.Replace(cfg, "memory: {", "memory: { max_keys: 5000,", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.g.Reload(); err != nil {
		t.Fatalf("reload with a new max_keys: %v", err)
	}
	resp, body = h.adminDo("POST", "/v1/counters/jobs/increment", "")
	wantStatus(t, resp, body, 200)
	if v := decode[map[string]any](t, body)["value"]; v != float64(2) {
		t.Fatalf("after the reload: %v, want 2", v)
	}
}

// TestTokensFollowReload: a token removed from the config stops working at
// the reload; the others keep theirs.
func TestTokensFollowReload(t *testing.T) {
	t.Parallel()
	cfg := scopeConfig(t)
	h := startGateway(t, cfg)
	status := func(token string) int {
		resp, _ := h.do("GET", h.admin+"/v1/counters", "", "Authorization", "Bearer "+token)
		return resp.StatusCode
	}
	if status("tok-read") != 200 || status("tok-keys") != 403 {
		t.Fatal("before the reload: tok-read should read and tok-keys not")
	}
	if err := os.WriteFile(h.path, []byte(strings.Replace(cfg, "    - { name: reader, token: tok-read, scopes: [read] }\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := status("tok-read"); got != 401 {
		t.Fatalf("a removed token after the reload: %d, want 401", got)
	}
	if status("tok-jobs") != 200 || status("secret") != 200 {
		t.Fatal("the remaining tokens stopped working")
	}
}
