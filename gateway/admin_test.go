package gateway_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	h := startGateway(t, proxyConfig(up.URL, "{ backend: memory }"))
	testAdminAPI(t, h)
}

func testAdminAPI(t *testing.T, h *harness) {
	t.Run("open endpoints", func(t *testing.T) {
		h.get("/limited/x") // so that the per-request series exist
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
			resp, body := h.do("GET", h.admin+path, "")
			wantStatus(t, resp, body, want)
		}
		_, body := h.do("GET", h.admin+"/metrics", "")
		for _, name := range []string{"sluice_requests_total", "sluice_decisions_total", "sluice_limiter_duration_seconds", "sluice_store_errors_total", "sluice_config_reloads_total"} {
			if !strings.Contains(body, name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})
	t.Run("401 without the token", func(t *testing.T) {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "secret"}, {"Authorization", "Basic c2VjcmV0"}} {
			resp, body := h.do("GET", h.admin+"/v1/policies", "", hdr...)
			wantJSONError(t, resp, body, 401)
		}
	})
	t.Run("policies", func(t *testing.T) {
		resp, body := h.adminDo("GET", "/v1/policies", "")
		wantStatus(t, resp, body, 200)
		v := decode[struct {
			Policies []struct {
				Name, Algorithm, Window string
				Limit                   int64
				Key                     []string
				Shadow                  bool
			}
		}](t, body)
		if len(v.Policies) != 3 || v.Policies[0].Name != "by-key" || v.Policies[0].Algorithm != "sliding_log" || v.Policies[0].Window != "1m0s" || v.Policies[0].Key[0] != "header:X-API-Key" {
			t.Fatalf("policies %s", body)
		}
	})
	t.Run("per-key usage, busiest keys and reset", func(t *testing.T) {
		keys := map[string]int{"alice": 2, "bob": 1, "2001:db8::/64": 2}
		for k, n := range keys {
			for range n + 1 {
				h.get("/keyed", "X-API-Key", k)
			}
		}
		resp, body := h.adminDo("GET", "/v1/policies/by-key/keys?limit=2", "")
		wantStatus(t, resp, body, 200)
		list := decode[struct {
			Policy string
			Keys   []map[string]any
		}](t, body)
		if list.Policy != "by-key" || len(list.Keys) != 2 || list.Keys[0]["key"] != "header:x-api-key:2001:db8::/64" || list.Keys[1]["key"] != "header:x-api-key:alice" {
			t.Fatalf("busiest keys %s, want header:x-api-key:2001:db8::/64 then header:x-api-key:alice", body)
		}
		for _, field := range []string{"key", "count", "limit", "remaining", "rejected", "reset_after_ms"} {
			if _, ok := list.Keys[0][field]; !ok {
				t.Fatalf("usage %v lacks %s", list.Keys[0], field)
			}
		}
		// What the listing shows as key_path addresses the key.
		if list.Keys[0]["key_path"] != url.PathEscape("header:x-api-key:2001:db8::/64") {
			t.Fatalf("key_path %v", list.Keys[0]["key_path"])
		}
		esc := "/v1/policies/by-key/keys/" + list.Keys[0]["key_path"].(string)
		resp, body = h.adminDo("GET", esc, "")
		wantStatus(t, resp, body, 200)
		u := decode[map[string]any](t, body)
		if u["key"] != "header:x-api-key:2001:db8::/64" || u["count"] != float64(2) || u["rejected"] != float64(1) || u["remaining"] != float64(0) || u["limit"] != float64(2) {
			t.Fatalf("usage of an escaped key: %s", body)
		}
		resp, body = h.adminDo("GET", "/v1/policies/by-key/keys/nobody", "")
		wantStatus(t, resp, body, 200)
		if u := decode[map[string]any](t, body); u["count"] != float64(0) || u["remaining"] != float64(2) {
			t.Fatalf("unseen key: %s", body)
		}
		resp, body = h.adminDo("DELETE", esc, "")
		wantStatus(t, resp, body, 204)
		if resp, _ := h.get("/keyed", "X-API-Key", "2001:db8::/64"); resp.StatusCode != 201 {
			t.Fatalf("after a reset: %d, want 201", resp.StatusCode)
		}
		for _, bad := range []string{"0", "-1", "x", "1.5"} {
			resp, body := h.adminDo("GET", "/v1/policies/by-key/keys?limit="+bad, "")
			wantJSONError(t, resp, body, 400)
		}
		resp, body = h.adminDo("GET", "/v1/policies/by-key/keys?limit=5000", "")
		wantStatus(t, resp, body, 200)
		for _, path := range []string{"/v1/policies/nope/keys", "/v1/policies/nope/keys/x"} {
			resp, body := h.adminDo("GET", path, "")
			wantJSONError(t, resp, body, 404)
		}
		resp, body = h.adminDo("DELETE", "/v1/policies/nope/keys/x", "")
		wantJSONError(t, resp, body, 404)
	})
	t.Run("counters", func(t *testing.T) {
		type counter struct {
			Name     string
			Value    int64
			Min, Max *int64
		}
		resp, body := h.adminDo("GET", "/v1/counters/seats", "")
		wantJSONError(t, resp, body, 404)
		resp, body = h.adminDo("PUT", "/v1/counters/seats", `{"value":8,"min":0,"max":10}`)
		wantStatus(t, resp, body, 200)
		if c := decode[counter](t, body); c.Name != "seats" || c.Value != 8 || *c.Min != 0 || *c.Max != 10 {
			t.Fatalf("PUT answered %s", body)
		}
		resp, body = h.adminDo("POST", "/v1/counters/seats/increment", "")
		wantStatus(t, resp, body, 200)
		if c := decode[counter](t, body); c.Value != 9 {
			t.Fatalf("increment: %s", body)
		}
		resp, body = h.adminDo("POST", "/v1/counters/seats/increment", `{"by":2}`)
		wantStatus(t, resp, body, 409)
		if v := decode[map[string]any](t, body); v["value"] != float64(9) || v["error"] == "" {
			t.Fatalf("409 body %s, want value 9", body)
		}
		resp, body = h.adminDo("POST", "/v1/counters/seats/decrement", `{"by":9}`)
		wantStatus(t, resp, body, 200)
		resp, body = h.adminDo("POST", "/v1/counters/seats/decrement", "")
		wantStatus(t, resp, body, 409)
		resp, body = h.adminDo("POST", "/v1/counters/fresh/decrement", `{"by":5}`)
		wantStatus(t, resp, body, 200)
		if c := decode[counter](t, body); c.Value != -5 || c.Min != nil || c.Max != nil {
			t.Fatalf("a missing counter starts at 0: %s", body)
		}
		resp, body = h.adminDo("PUT", "/v1/counters/huge", `{"value":9223372036854775807}`)
		wantStatus(t, resp, body, 200)
		resp, body = h.adminDo("POST", "/v1/counters/huge/increment", "")
		wantStatus(t, resp, body, 409)
		for _, bad := range []struct{ method, path, body string }{
			{"PUT", "/v1/counters/x", `{"value":11,"max":10}`},
			{"PUT", "/v1/counters/x", `{"value":1,"min":5,"max":2}`},
			{"PUT", "/v1/counters/x", `{"value":1.5}`},
			{"PUT", "/v1/counters/x", `{"value":"1"}`},
			{"PUT", "/v1/counters/x", `{"valu":1}`},
			{"PUT", "/v1/counters/x", `{`},
			{"PUT", "/v1/counters/x", ``},
			{"PUT", "/v1/counters/x", `{"value":1}{"value":2}`},
			{"POST", "/v1/counters/x/increment", `{"by":0}`},
			{"POST", "/v1/counters/x/increment", `{"by":-3}`},
			{"POST", "/v1/counters/x/increment", `{"by":2.5}`},
			{"POST", "/v1/counters/x/decrement", `[]`},
			{"PUT", "/v1/counters/" + url.PathEscape("a b"), `{"value":1}`},
		} {
			resp, body := h.adminDo(bad.method, bad.path, bad.body)
			if resp.StatusCode != 400 {
				t.Errorf("%s %s %s: status %d, want 400; %s", bad.method, bad.path, bad.body, resp.StatusCode, body)
			}
		}
		resp, body = h.adminDo("PUT", "/v1/counters/big", `{"value":1,"pad":"`+strings.Repeat("x", 1<<20)+`"}`)
		wantJSONError(t, resp, body, 413)
		resp, body = h.adminDo("GET", "/v1/counters", "")
		wantStatus(t, resp, body, 200)
		list := decode[struct{ Counters []counter }](t, body)
		var names []string
		for _, c := range list.Counters {
			names = append(names, c.Name)
		}
		if fmt.Sprint(names) != "[fresh huge seats]" {
			t.Fatalf("counters %v", names)
		}
		resp, body = h.adminDo("DELETE", "/v1/counters/seats", "")
		wantStatus(t, resp, body, 204)
		resp, body = h.adminDo("GET", "/v1/counters/seats", "")
		wantJSONError(t, resp, body, 404)
	})
	t.Run("unknown endpoints", func(t *testing.T) {
		resp, body := h.adminDo("GET", "/v1/nothing", "")
		wantJSONError(t, resp, body, 404)
		resp, body = h.adminDo(http.MethodPatch, "/v1/counters/x", "{}")
		wantJSONError(t, resp, body, 405)
		if !strings.Contains(resp.Header.Get("Allow"), "PUT") {
			t.Fatalf("Allow %q", resp.Header.Get("Allow"))
		}
		resp, body = h.do("GET", h.admin+"/nothing", "")
		wantJSONError(t, resp, body, 404)
	})
}
