package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

func proxyConfig(upstream, store string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: %s
policies:
  per-ip: { limit: 3, window: 1m }
  by-key:
    key: ["header:X-API-Key"]
    on_missing_key: reject
    algorithm: sliding_log
    limit: 2
    window: 1m
  wide: { limit: 1000, window: 1h, algorithm: fixed_window }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: %q, strip_prefix: true, timeout: 300ms }
  - name: api-v2
    match: { path_prefix: /api/v2/ }
    upstream: { url: %q, strip_prefix: false }
  - name: limited
    match: { path_prefix: /limited }
    upstream: { url: %q, strip_prefix: true }
    policies: [wide, per-ip]
  - name: keyed
    match: { path_prefix: /keyed }
    respond: { status: 201, body: "keyed\n" }
    policies: [by-key]
  - name: writes
    match: { path_prefix: /writes, methods: [POST, PUT] }
    respond: { body: "written\n" }
  - name: host-only
    match: { path_prefix: /, host: "special.example" }
    respond: { body: "special\n" }
  - name: down
    match: { path_prefix: /down }
    upstream: { url: "http://127.0.0.1:1" }
`, store, upstream, upstream, upstream)
}

func TestProxyContract(t *testing.T) {
	forEachTransport(t, testProxyContract)
}

func testProxyContract(t *testing.T, transport string) {
	up := newUpstream(t)
	h := startGateway(t, withTransport(transport, proxyConfig(up.URL, "{ backend: memory }")))
	type echo struct{ Path, Raw, Query, Host, Xff, Xfh, Xfp string }

	t.Run("strip_prefix leaves a leading slash", func(t *testing.T) {
		resp, body := h.get("/api/users?id=7")
		wantStatus(t, resp, body, 200)
		e := decode[echo](t, body)
		if e.Path != "/users" || e.Query != "id=7" {
			t.Fatalf("upstream saw %+v, want path /users query id=7", e)
		}
		_, body = h.get("/api")
		if e := decode[echo](t, body); e.Path != "/" {
			t.Fatalf("/api reached upstream as %q, want /", e.Path)
		}
	})
	t.Run("escaped path survives", func(t *testing.T) {
		_, body := h.get("/api/a%2Fb/c")
		if e := decode[echo](t, body); e.Raw != "/a%2Fb/c" {
			t.Fatalf("upstream raw path %q, want /a%%2Fb/c", e.Raw)
		}
	})
	t.Run("longest prefix wins; no strip", func(t *testing.T) {
		_, body := h.get("/api/v2/things")
		if e := decode[echo](t, body); e.Path != "/api/v2/things" {
			t.Fatalf("upstream path %q, want /api/v2/things", e.Path)
		}
	})
	t.Run("whole segments", func(t *testing.T) {
		resp, body := h.get("/apix")
		wantJSONError(t, resp, body, 404)
		if body != "{\"error\":\"no route\"}\n" {
			t.Fatalf("404 body %q", body)
		}
	})
	t.Run("forwarding headers", func(t *testing.T) {
		_, body := h.get("/api/x", "X-Forwarded-For", "6.6.6.6", "Host", "front.example")
		e := decode[echo](t, body)
		if e.Xff != "127.0.0.1" || e.Xfh != "front.example" || e.Xfp != "http" {
			t.Fatalf("forwarding headers %+v: want XFF 127.0.0.1 (the spoofed one dropped), host front.example, proto http", e)
		}
	})
	t.Run("host match", func(t *testing.T) {
		_, body := h.get("/anything", "Host", "special.example:8080")
		if body != "special\n" {
			t.Fatalf("host route answered %q", body)
		}
	})
	t.Run("405 with Allow", func(t *testing.T) {
		resp, body := h.get("/writes")
		wantJSONError(t, resp, body, 405)
		if a := resp.Header.Get("Allow"); a != "POST, PUT" {
			t.Fatalf("Allow %q, want POST, PUT", a)
		}
		resp, body = h.do("POST", h.proxy+"/writes", "x")
		wantStatus(t, resp, body, 200)
	})
	t.Run("static route and HEAD", func(t *testing.T) {
		resp, body := h.do("HEAD", h.proxy+"/keyed", "", "X-API-Key", "head")
		if resp.StatusCode != 201 || body != "" {
			t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("502 unreachable", func(t *testing.T) {
		resp, body := h.get("/down")
		wantJSONError(t, resp, body, 502)
	})
	t.Run("504 timeout to headers", func(t *testing.T) {
		start := time.Now()
		resp, body := h.get("/api/slow")
		wantJSONError(t, resp, body, 504)
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("504 after %v with a 300ms timeout", took)
		}
	})
	t.Run("truncated upstream body is an error", func(t *testing.T) {
		resp, err := h.client.Get(h.proxy + "/api/die")
		if err != nil {
			t.Fatalf("headers should arrive before the upstream dies: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("read %q with no error: a truncated body looked complete", b)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
			t.Logf("truncation surfaced as %v", err)
		}
	})
	t.Run("server-sent events stream", func(t *testing.T) {
		resp, err := h.client.Get(h.proxy + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 64)
		n, err := resp.Body.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "data: 0") {
			t.Fatalf("first event: %q %v", buf[:n], err)
		}
	})
	t.Run("websocket upgrade", func(t *testing.T) {
		conn, rd := rawUpgrade(t, strings.TrimPrefix(h.proxy, "http://"), "/api/ws")
		defer conn.Close()
		status, err := rd.ReadString('\n')
		if err != nil || !strings.Contains(status, "101") {
			t.Fatalf("status line %q %v", status, err)
		}
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
		}
		fmt.Fprint(conn, "ping\n")
		if line, err := rd.ReadString('\n'); err != nil || line != "echo ping\n" {
			t.Fatalf("echo %q %v", line, err)
		}
	})
	t.Run("missing key rejects with 400", func(t *testing.T) {
		resp, body := h.get("/keyed")
		wantJSONError(t, resp, body, 400)
	})
}

func TestLimitingOverTheProxy(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		up := newUpstream(t)
		h := startGateway(t, withTransport(transport, proxyConfig(up.URL, "{ backend: memory }")))
		testLimiting(t, h)
	})
}

// testLimiting: per-ip admits exactly 3 of 40 concurrent requests, with the
// headers of the most restrictive policy, and the wide policy is refunded.
func testLimiting(t *testing.T, h *harness) {
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sample *http.Response
	for range 40 {
		wg.Go(func() {
			resp, err := h.client.Get(h.proxy + "/limited/x")
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 429:
				limited.Add(1)
				mu.Lock()
				sample = resp
				mu.Unlock()
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 3 || limited.Load() != 37 {
		t.Fatalf("admitted %d, limited %d; want exactly 3 and 37", ok.Load(), limited.Load())
	}
	hd := sample.Header
	if hd.Get("Content-Type") != "application/json" || hd.Get("Cache-Control") != "no-store" {
		t.Fatalf("429 headers %v", hd)
	}
	if n, err := strconv.Atoi(hd.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", hd.Get("Retry-After"))
	}
	pol, err := httpsfv.UnmarshalList(hd.Values("RateLimit-Policy"))
	if err != nil || len(pol) != 1 || pol[0].(httpsfv.Item).Value != "per-ip" {
		t.Fatalf("RateLimit-Policy %q: %v", hd.Get("RateLimit-Policy"), err)
	}
	q, _ := pol[0].(httpsfv.Item).Params.Get("q")
	w, _ := pol[0].(httpsfv.Item).Params.Get("w")
	if q != int64(3) || w != int64(60) {
		t.Fatalf("RateLimit-Policy q=%v w=%v, want 3 and 60", q, w)
	}
	rl, err := httpsfv.UnmarshalList(hd.Values("RateLimit"))
	if err != nil || len(rl) != 1 {
		t.Fatalf("RateLimit %q: %v", hd.Get("RateLimit"), err)
	}
	if r, _ := rl[0].(httpsfv.Item).Params.Get("r"); r != int64(0) {
		t.Fatalf("RateLimit r=%v, want 0", r)
	}
	resp, body := h.adminDo("GET", "/v1/policies/wide/keys/127.0.0.1", "")
	wantStatus(t, resp, body, 200)
	if u := decode[map[string]any](t, body); u["count"] != float64(3) {
		t.Fatalf("wide policy usage %s: count must be 3 (requests rejected by per-ip are refunded)", body)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	forEachTransport(t, testClientDisconnectCancelsUpstream)
}

func testClientDisconnectCancelsUpstream(t *testing.T, transport string) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	up := newUpstream(t)
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(5 * time.Second):
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = slow.Serve(ln) }()
	t.Cleanup(func() { slow.Close() })
	cfg := strings.Replace(withTransport(transport, proxyConfig(up.URL, "{ backend: memory }")), `url: "http://127.0.0.1:1"`, fmt.Sprintf(`url: "http://%s"`, ln.Addr()), 1)
	h := startGateway(t, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /down HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-started:
	case <-time.After(3 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	conn.Close()
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("the upstream request was not cancelled when the client went away")
	}
}
