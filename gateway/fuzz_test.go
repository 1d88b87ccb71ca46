package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzAdmin sends arbitrary methods, paths and bodies to the admin API with
// the token: the answer is never a 5xx and always JSON.
func FuzzAdmin(f *testing.F) {
	f.Add("PUT", "/v1/counters/a", `{"value":1,"min":null,"max":2}`)
	f.Add("POST", "/v1/counters/a/increment", `{"by":9223372036854775807}`)
	f.Add("POST", "/v1/counters/a/decrement", `{"by":1e3}`)
	f.Add("GET", "/v1/policies/per-ip/keys?limit=99999999999999999999", "")
	f.Add("GET", "/v1/policies/per-ip/keys/%zz", "")
	f.Add("DELETE", "/v1/policies/per-ip/keys/..%2F..%2Fetc", "")
	f.Add("GET", "/v1/counters/\xff", "")
	f.Add("PUT", "/v1/counters/b", `{"value":`)
	h := startGateway(f, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, h.admin+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := h.client.Do(req)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != 503 {
			t.Fatalf("%s %q %q: %d %s", method, path, body, resp.StatusCode, b)
		}
		if method != "HEAD" && resp.StatusCode != 204 && resp.StatusCode != 101 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") &&
			!strings.HasPrefix(path, "/metrics") && resp.StatusCode != 400 {
			t.Fatalf("%s %q: %d with Content-Type %q", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}
