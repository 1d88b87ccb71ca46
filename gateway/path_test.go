package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawRequest writes req (a whole HTTP/1.1 request, written as given) to
// addr and reads one response.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: reading the response: %v", req, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the body: %v", req, err)
	}
	return resp, string(b)
}

// lenientUpstream reads paths the way permissive servers do (escaped slashes
// and backslashes are separators, ";" starts parameters, dot segments are
// resolved) and serves "private" under /private/. It counts what it serves
// and echoes the path it was sent.
type lenientUpstream struct {
	*httptest.Server
	private atomic.Int64
}

func newLenientUpstream(t *testing.T) *lenientUpstream {
	t.Helper()
	u := &lenientUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.ReplaceAll(r.URL.Path, `\`, "/") // Path has %2F and %5C decoded
		var segs []string
		for s := range strings.SplitSeq(p, "/") {
			s, _, _ = strings.Cut(s, ";")
			segs = append(segs, s)
		}
		p = path.Clean("/" + strings.Join(segs, "/"))
		content := "public"
		if p == "/private" || strings.HasPrefix(p, "/private/") {
			content = "private"
			u.private.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"content": content, "path": r.URL.Path, "raw": r.URL.EscapedPath()})
	}))
	t.Cleanup(u.Close)
	return u
}

// TestPathTricksDoNotWalkAroundALimit: with /private/ limited to 2 a minute
// and exhausted, no spelling of a private path reaches the upstream's private
// content; each is either cleaned to /private/... (and limited) or refused.
func TestPathTricksDoNotWalkAroundALimit(t *testing.T) {
	t.Parallel()
	up := newLenientUpstream(t)
	h := startGateway(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  private: { limit: 2, window: 1m }
routes:
  - name: private
    match: { path_prefix: /private/ }
    upstream: { url: %q }
    policies: [private]
  - name: public
    match: { path_prefix: / }
    upstream: { url: %q }
`, up.URL, up.URL))
	addr := strings.TrimPrefix(h.proxy, "http://")
	get := func(target string) (*http.Response, string) {
		return rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	}
	for i := range 3 {
		resp, body := get("/private/x")
		if want := []int{200, 200, 429}[i]; resp.StatusCode != want {
			t.Fatalf("/private/x #%d: %d %s, want %d", i+1, resp.StatusCode, body, want)
		}
	}
	if n := up.private.Load(); n != 2 {
		t.Fatalf("upstream served private content %d times while exhausting the limit, want 2", n)
	}
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/public/../private/x", 429},
		{"/public/%2e%2e/private/x", 429},
		{"/public/%2E%2E/private/x", 429},
		{"/public/.%2e/private/x", 429},
		{"/public/%2e./private/x", 429},
		{"//private/x", 429},
		{"///private//x", 429},
		{"/./private/x", 429},
		{"/%2e/private/x", 429},
		{"/../private/x", 429},
		{"/../../private/x/", 429},
		{"/private/a/../../private/x", 429},
		{"/public/x/../../private/x", 429},
		{"/private%2Fx", 429}, // matched on the decoded path, as before
		{"/private;/x", 429},  // path parameters, as Java servers drop them
		{"/private;jsessionid=1/x", 429},
		{"/private%3b/x", 429},
		{`/private\x`, 429}, // a backslash, as Windows servers read it
		{"/%5cprivate/x", 429},
		{"/%2Fprivate/x", 429}, // decoded "//private/x": an upstream that merges slashes reads /private/x
		{"/%2fprivate/%2F/x", 429},
		{"/%2F%2Fprivate/x", 429},
		{`/\private/x`, 429},
		{"/public/..%252fprivate/x", 400}, // escaped twice
		{"/public/%252e%252e/private/x", 400},
		{"/public/..%00/private/x", 400},
		{"/public/..%2fprivate/x", 400},
		{"/public/..%2Fprivate/x", 400},
		{"/public/%2e%2e%2fprivate/x", 400},
		{"/public/%2E%2E%2Fprivate/x", 400},
		{"/public/..%5cprivate/x", 400},
		{"/public/..%5Cprivate/x", 400},
		{`/public/..\private/x`, 400},
		{"/public/..;/private/x", 400},
		{"/public/%2e%2e;x/private/x", 400},
		{"/public/a%2f..%2f..%2fprivate/x", 400},
	} {
		t.Run(tc.target, func(t *testing.T) {
			before := up.private.Load()
			resp, body := get(tc.target)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.want, body)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(body, `"error"`) {
				t.Errorf("answer %q (%s) is not a JSON error", body, resp.Header.Get("Content-Type"))
			}
			if n := up.private.Load() - before; n != 0 {
				t.Errorf("reached the upstream's private content %d times", n)
			}
		})
	}
	if n := up.private.Load(); n != 2 {
		t.Fatalf("upstream served private content %d times in all, want 2", n)
	}

	// What the upstream is sent is the cleaned path; %2F inside a segment
	// stays as it is.
	for _, tc := range []struct{ target, path, raw string }{
		{"/public/a%2Fb", "/public/a/b", "/public/a%2Fb"},
		{"/public/./a//b/", "/public/a/b/", "/public/a/b/"},
		{"/public/a/%2e%2e/b", "/public/b", "/public/b"},
		{"/public/x/..", "/public/", "/public/"},
		{"/public/x/.", "/public/x/", "/public/x/"},
		{"//public///c%2Fd/../e", "/public/e", "/public/e"},
		{"/public/a%2Fb//c", "/public/a/b/c", "/public/a%2Fb/c"},
		{"/public/file.tar.gz", "/public/file.tar.gz", "/public/file.tar.gz"},
		{"/public/...", "/public/...", "/public/..."},
		{"/public/a;b/c", "/public/a;b/c", "/public/a;b/c"},
		{"/..", "/", "/"},
	} {
		resp, body := get(tc.target)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, want 200; body %s", tc.target, resp.StatusCode, body)
			continue
		}
		var e struct{ Content, Path, Raw string }
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("%s: %s: %v", tc.target, body, err)
		}
		if e.Content != "public" || e.Path != tc.path || e.Raw != tc.raw {
			t.Errorf("%s reached the upstream as path %q raw %q (%s), want %q %q (public)", tc.target, e.Path, e.Raw, e.Content, tc.path, tc.raw)
		}
	}
}

// TestConnectIsRefused: CONNECT and TRACE are answered 405 with Allow and
// never reach the upstream, in authority form and in path form.
func TestConnectIsRefused(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(up.Close)
	h := startGateway(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: { url: %q }
`, up.URL))
	addr := strings.TrimPrefix(h.proxy, "http://")
	for _, target := range []string{strings.TrimPrefix(up.URL, "http://"), "/", "/x"} {
		resp, body := rawRequest(t, addr, "CONNECT "+target+" HTTP/1.1\r\nHost: "+strings.TrimPrefix(up.URL, "http://")+"\r\n\r\n")
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(body, `"error"`) {
			t.Errorf("CONNECT %s: %d %q, want 405 with a JSON error", target, resp.StatusCode, body)
		}
		if a := resp.Header.Get("Allow"); a == "" || strings.Contains(a, "CONNECT") {
			t.Errorf("CONNECT %s: Allow %q", target, a)
		}
	}
	for _, target := range []string{"/", "/x", "*"} {
		resp, body := rawRequest(t, addr, "TRACE "+target+" HTTP/1.1\r\nHost: x\r\nCookie: session=secret\r\n\r\n")
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(body, `"error"`) || strings.Contains(body, "secret") {
			t.Errorf("TRACE %s: %d %q, want 405 with a JSON error", target, resp.StatusCode, body)
		}
		if a := resp.Header.Get("Allow"); a == "" || strings.Contains(a, "TRACE") {
			t.Errorf("TRACE %s: Allow %q", target, a)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the upstream saw %d CONNECT or TRACE requests, want 0", n)
	}
}
