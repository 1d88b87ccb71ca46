package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestKeysThatAreNotUTF8: keys made of any bytes are listed apart, each with
// a key_path that resets exactly that key; a repeated key header is 400.
func TestKeysThatAreNotUTF8(t *testing.T) {
	t.Parallel()
	h := startGateway(t, `
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  by-key: { key: ["header:X-Key"], on_missing_key: reject, limit: 10, window: 1h }
routes:
  - name: keyed
    match: { path_prefix: / }
    respond: { body: "ok\n" }
    policies: [by-key]
`)
	addr := strings.TrimPrefix(h.proxy, "http://")
	send := func(headers string) *http.Response {
		t.Helper()
		resp, _ := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n"+headers+"Connection: close\r\n\r\n")
		return resp
	}
	counts := map[string]int{"\xff\xfe": 3, "\xfe\xff": 2, "a/b": 1, "..": 1, "caf\xc3\xa9": 1}
	for key, n := range counts {
		for range n {
			if resp := send("X-Key: " + key + "\r\n"); resp.StatusCode != 200 {
				t.Fatalf("key %q: status %d", key, resp.StatusCode)
			}
		}
	}
	type usage struct {
		Key     string `json:"key"`
		KeyPath string `json:"key_path"`
		Count   int64  `json:"count"`
	}
	list := func() map[string]int64 {
		t.Helper()
		resp, body := h.adminDo("GET", "/v1/policies/by-key/keys", "")
		wantStatus(t, resp, body, 200)
		got := map[string]int64{}
		for _, u := range decode[struct{ Keys []usage }](t, body).Keys {
			got[u.KeyPath] = u.Count
		}
		return got
	}
	// Keys carry their source; key_path is the key path-escaped.
	const hk = "header:x-key:"
	want := map[string]int64{hk + "%FF%FE": 3, hk + "%FE%FF": 2, hk + "a%2Fb": 1, hk + "..": 1, hk + "caf%C3%A9": 1}
	got := list()
	for path, n := range want {
		if got[path] != n {
			t.Errorf("key_path %q: count %d, want %d (listing %v)", path, got[path], n, got)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listing %v, want the %d keys %v", got, len(want), want)
	}
	// What the listing shows resets that key and no other.
	for _, path := range []string{hk + "%FF%FE", hk + "..", hk + "a%2Fb"} {
		resp, body := h.adminDo("DELETE", "/v1/policies/by-key/keys/"+path, "")
		wantStatus(t, resp, body, http.StatusNoContent)
		resp, body = h.adminDo("GET", "/v1/policies/by-key/keys/"+path, "")
		wantStatus(t, resp, body, 200)
		if u := decode[usage](t, body); u.Count != 0 || u.KeyPath != path {
			t.Fatalf("after resetting %s: %+v, want count 0 and the same key_path", path, u)
		}
		delete(want, path)
	}
	got = list()
	for path, n := range want {
		if got[path] != n {
			t.Errorf("after the resets, key_path %q: count %d, want %d", path, got[path], n)
		}
	}

	// A repeated key header is ambiguous: 400, and nothing is counted.
	resp := send("X-Key: caf\xc3\xa9\r\nX-Key: other\r\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a repeated key header: %d, want 400", resp.StatusCode)
	}
	if got := list(); got[hk+"caf%C3%A9"] != 1 || got[hk+"other"] != 0 {
		t.Fatalf("a repeated key header was counted: %v", got)
	}
}
