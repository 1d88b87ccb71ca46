package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestClientXRealIPIsNotForwarded: a client that is not a trusted proxy
// cannot tell the upstream an address of its choosing in X-Real-IP (the
// gateway does not believe it either); from a trusted proxy it passes, as
// X-Forwarded-For's chain does.
func TestClientXRealIPIsNotForwarded(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%q", r.Header.Values("X-Real-Ip"))
		}))
		t.Cleanup(up.Close)
		for _, tc := range []struct{ trusted, want string }{
			{"[]", `[]`},
			{`["127.0.0.1/32"]`, `["6.6.6.6"]`},
		} {
			h := startGateway(t, withTransport(transport, fmt.Sprintf(`
listen: "127.0.0.1:0"
trusted_proxies: %s
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
routes:
  - { name: r, match: { path_prefix: / }, upstream: { url: %q } }
`, tc.trusted, up.URL)))
			req, _ := http.NewRequest("GET", h.proxy+"/x", nil)
			req.Header.Set("X-Real-IP", "6.6.6.6")
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			body := string(b)
			if body != tc.want {
				t.Errorf("trusted_proxies %s: upstream saw X-Real-IP %s, want %s", tc.trusted, body, tc.want)
			}
		}
	})
}
