package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// mustOnlyKey waits (at most 5s) until the policy's listing on h shows
// exactly one key and returns its key_path: overrides are set on the key
// as the listing shows it.
func mustOnlyKey(t *testing.T, h *harness, policy string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := h.adminDo("GET", "/v1/policies/"+policy+"/keys", "")
		keys := decode[struct {
			Keys []struct {
				KeyPath string `json:"key_path"`
			} `json:"keys"`
		}](t, body).Keys
		if len(keys) == 1 {
			return keys[0].KeyPath
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing of %s: %s, want one key", policy, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyLimit is the limit the gateway applies to the key now (read without
// counting).
func keyLimit(t *testing.T, h *harness, policy, keyPath string) int64 {
	t.Helper()
	resp, body := h.adminDo("GET", "/v1/policies/"+policy+"/keys/"+keyPath, "")
	wantStatus(t, resp, body, 200)
	return decode[struct {
		Limit int64 `json:"limit"`
	}](t, body).Limit
}

// waitLimit polls until the gateway applies want to the key, failing after
// within (a refresh interval plus slack for a busy machine).
func waitLimit(t *testing.T, h *harness, policy, keyPath string, want int64, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		got := keyLimit(t, h, policy, keyPath)
		if got == want {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("limit of %s on %s is %d after %v, want %d", keyPath, h.admin, got, within, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestOverridesAPI: a token with the keys scope sets a key's limit at run
// time, requests obey it at once, the change is audited with the token's
// name, bad input is 400, other scopes 403, and DELETE restores the limit.
func TestOverridesAPI(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	h := startGatewayLogs(t, scopeConfig(t), &logs)
	if resp, body := h.get("/keyed", "X-API-Key", "alice"); resp.StatusCode != 201 {
		t.Fatalf("first request: %d %s", resp.StatusCode, body)
	}
	kp := mustOnlyKey(t, h, "by-key")
	url := h.admin + "/v1/policies/by-key/overrides/" + kp
	as := func(token, method, url, body string) (*http.Response, string) {
		return h.do(method, url, body, "Authorization", "Bearer "+token)
	}
	for _, tc := range []struct {
		token, method, url, body string
		want                     int
	}{
		{"tok-read", "PUT", url, `{"limit":5}`, 403},
		{"tok-counters", "DELETE", url, "", 403},
		{"tok-keys", "PUT", url, `{"limit":0}`, 400},
		{"tok-keys", "PUT", url, `{"limit":-3}`, 400},
		{"tok-keys", "PUT", url, `{"limit":"5"}`, 400},
		{"tok-keys", "PUT", url, `{"limit":1.5}`, 400},
		{"tok-keys", "PUT", url, `{"limit":5,"burst":1}`, 400},
		{"tok-keys", "PUT", url, `{}`, 400},
		{"tok-keys", "PUT", url, ``, 400},
		{"tok-keys", "PUT", h.admin + "/v1/policies/by-key/overrides/" + strings.Repeat("k", 4097), `{"limit":5}`, 400},
		{"tok-keys", "PUT", h.admin + "/v1/policies/nope/overrides/x", `{"limit":5}`, 404},
		{"tok-keys", "DELETE", url, "", 404},
		{"tok-read", "GET", h.admin + "/v1/policies/nope/overrides", "", 404},
	} {
		resp, body := as(tc.token, tc.method, tc.url, tc.body)
		wantJSONError(t, resp, body, tc.want)
	}
	if got := keyLimit(t, h, "by-key", kp); got != 2 {
		t.Fatalf("limit after refused writes %d, want 2", got)
	}

	resp, body := as("tok-keys", "PUT", url, `{"limit":5}`)
	wantStatus(t, resp, body, 200)
	if v := decode[map[string]any](t, body); v["limit"] != float64(5) || v["source"] != "runtime" || v["key_path"] != kp {
		t.Fatalf("PUT answered %s", body)
	}
	for i := 2; i <= 6; i++ {
		resp, body := h.get("/keyed", "X-API-Key", "alice")
		want := map[bool]int{true: 201, false: 429}[i <= 5]
		if resp.StatusCode != want || resp.Header.Get("X-RateLimit-Limit") != "5" {
			t.Fatalf("request %d: %d limit %q %s, want %d with limit 5", i, resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"), body, want)
		}
	}
	resp, body = as("tok-read", "GET", h.admin+"/v1/policies/by-key/overrides", "")
	wantStatus(t, resp, body, 200)
	list := decode[struct {
		Policy    string `json:"policy"`
		Overrides []struct {
			KeyPath string `json:"key_path"`
			Limit   int64  `json:"limit"`
			Source  string `json:"source"`
		} `json:"overrides"`
	}](t, body)
	if list.Policy != "by-key" || len(list.Overrides) != 1 || list.Overrides[0].KeyPath != kp || list.Overrides[0].Limit != 5 || list.Overrides[0].Source != "runtime" {
		t.Fatalf("listing: %s", body)
	}
	if l := logs.String(); !strings.Contains(l, `msg="override set" token=ops policy=by-key`) || !strings.Contains(l, "limit=5 previous=0") {
		t.Fatalf("no audit line naming the token:\n%s", l)
	}

	resp, body = as("tok-keys", "DELETE", url, "")
	wantStatus(t, resp, body, 204)
	if got := keyLimit(t, h, "by-key", kp); got != 2 {
		t.Fatalf("limit after DELETE %d, want the policy's 2", got)
	}
	if resp, _ := h.get("/keyed", "X-API-Key", "alice"); resp.StatusCode != 429 || resp.Header.Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("after DELETE: %d limit %q, want 429 with limit 2", resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"))
	}
	if l := logs.String(); !strings.Contains(l, `msg="override deleted" token=ops policy=by-key`) {
		t.Fatalf("no audit line for the delete:\n%s", l)
	}
}

// TestOverridesFleet: three gateways on one Redis; an override set on one
// applies on the others within the refresh interval (1s, polled with a
// bounded wait), even to a key they hold as blocked; a delete on another
// likewise; and a gateway started later applies the overrides from its
// first request.
func TestOverridesFleet(t *testing.T) {
	t.Parallel()
	cfg := proxyConfig("http://127.0.0.1:1", redisStoreConfig(limitertest.RedisAddr(t)))
	var gws []*harness
	for range 3 {
		gws = append(gws, startGateway(t, cfg))
	}
	// Use up the key's 2 and get it rejected on every gateway, so that each
	// remembers it as blocked until its retry time.
	for i := range 4 {
		resp, _ := gws[i%3].get("/keyed", "X-API-Key", "alice")
		if want := map[bool]int{true: 201, false: 429}[i < 2]; resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	kp := mustOnlyKey(t, gws[0], "by-key")
	const within = 2500 * time.Millisecond // refresh 1s, plus slack for a busy machine
	resp, body := gws[0].adminDo("PUT", "/v1/policies/by-key/overrides/"+kp, `{"limit":7}`)
	wantStatus(t, resp, body, 200)
	if got := keyLimit(t, gws[0], "by-key", kp); got != 7 {
		t.Fatalf("the gateway that set it applies %d, want 7 at once", got)
	}
	for _, h := range gws[1:] {
		waitLimit(t, h, "by-key", kp, 7, within)
	}
	admitted := 2
	for i := range 9 {
		if resp, _ := gws[i%3].get("/keyed", "X-API-Key", "alice"); resp.StatusCode == 201 {
			admitted++
		}
	}
	if admitted != 7 {
		t.Fatalf("the fleet admitted %d, want the override's 7", admitted)
	}
	resp, body = gws[1].adminDo("DELETE", "/v1/policies/by-key/overrides/"+kp, "")
	wantStatus(t, resp, body, 204)
	for _, h := range []*harness{gws[0], gws[2]} {
		waitLimit(t, h, "by-key", kp, 2, within)
	}
	resp, body = gws[2].adminDo("PUT", "/v1/policies/by-key/overrides/"+kp, `{"limit":9}`)
	wantStatus(t, resp, body, 200)
	late := startGateway(t, cfg)
	if got := keyLimit(t, late, "by-key", kp); got != 9 {
		t.Fatalf("a gateway started after the change applies %d, want 9", got)
	}
}

// TestOverridesSurviveRestart: on the memory store with store.memory.path,
// an override is in the file and applies after a restart.
func TestOverridesSurviveRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice.db")
	cfg := proxyConfig("http://127.0.0.1:1", fmt.Sprintf(`{ backend: memory, memory: { path: %q } }`, path))
	h := startGateway(t, cfg)
	h.get("/keyed", "X-API-Key", "alice")
	kp := mustOnlyKey(t, h, "by-key")
	resp, body := h.adminDo("PUT", "/v1/policies/by-key/overrides/"+kp, `{"limit":6}`)
	wantStatus(t, resp, body, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h = startGateway(t, cfg)
	if got := keyLimit(t, h, "by-key", kp); got != 6 {
		t.Fatalf("after a restart the limit is %d, want 6", got)
	}
	_, body = h.adminDo("GET", "/v1/policies/by-key/overrides", "")
	if !strings.Contains(body, `"limit":6`) || !strings.Contains(body, strconv.Quote(kp)) {
		t.Fatalf("listing after a restart: %s", body)
	}
}
