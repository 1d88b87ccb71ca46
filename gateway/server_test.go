package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// bodyUpstream reads each request body to the end and answers how many
// bytes it got; it counts the requests whose body arrived whole and the
// handlers that have returned.
type bodyUpstream struct {
	*httptest.Server
	whole, done atomic.Int64
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer u.done.Add(1)
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		u.whole.Add(1)
		fmt.Fprintf(w, "%d", n)
	}))
	t.Cleanup(u.Close)
	return u
}

func bodyConfig(upstream, server string) string {
	return bodyConfigOn(upstream, server, "fast")
}

// bodyConfigOn is bodyConfig with the given upstream_transport.
func bodyConfigOn(upstream, server, transport string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
upstream_transport: %s
server: %s
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: %q }
  - name: static
    match: { path_prefix: /static }
    respond: { body: "static\n" }
`, transport, server, upstream)
}

// dial opens a raw connection to the proxy listener with an overall
// deadline, so a test that would hang fails instead.
func dial(t *testing.T, h *harness) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(h.proxy, "http://"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readResponse(t *testing.T, conn net.Conn) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestMalformedBodyIsAClientError: a body the client botches is its fault:
// 400, not 502, and not counted as an upstream exchange.
func TestMalformedBodyIsAClientError(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"fast", "standard"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			testMalformedBody(t, transport)
		})
	}
}

func testMalformedBody(t *testing.T, transport string) {
	up := newBodyUpstream(t)
	h := startGateway(t, bodyConfigOn(up.URL, "{}", transport))
	for _, tc := range []struct{ name, head, body string }{
		{"chunk size overflows", "Transfer-Encoding: chunked", "ffffffffffffffffffff1\r\nx\r\n0\r\n\r\n"},
		{"chunk size not hex", "Transfer-Encoding: chunked", "zz\r\nx\r\n0\r\n\r\n"},
		{"chunk without its CRLF", "Transfer-Encoding: chunked", "1\r\nxyz\r\n0\r\n\r\n"},
		{"body shorter than its length", "Content-Length: 10", "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, h)
			fmt.Fprintf(conn, "POST /api/x HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n%s", tc.head, tc.body)
			if strings.HasPrefix(tc.head, "Content-Length") {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			resp, body := readResponse(t, conn)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
				t.Fatalf("status %d %q, want 400 with a JSON error", resp.StatusCode, body)
			}
		})
	}
	if n := up.whole.Load(); n != 0 {
		t.Fatalf("the upstream got %d whole bodies, want 0", n)
	}
	// A good request still goes through: the upstream is fine.
	resp, body := h.do("POST", h.proxy+"/api/x", "hello")
	if resp.StatusCode != 200 || body != "5" {
		t.Fatalf("good request: %d %q", resp.StatusCode, body)
	}
	for series, want := range map[string]string{
		`sluice_requests_total{code="400",route="api"}`:       "4",
		`sluice_requests_total{code="502",route="api"}`:       "",
		`sluice_requests_total{code="200",route="api"}`:       "1",
		`sluice_upstream_duration_seconds_count{route="api"}`: "1",
	} {
		if got := metric(t, h, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
}

// TestSlowBodies: a body that stalls, or trickles in below the minimum
// rate, is answered 408 within the configured bounds, and frees its
// upstream request; a body sent at a fair pace, or fast, goes through.
func TestSlowBodies(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"fast", "standard"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			testSlowBodies(t, transport)
		})
	}
}

func testSlowBodies(t *testing.T, transport string) {
	up := newBodyUpstream(t)
	h := startGateway(t, bodyConfigOn(up.URL, "{ body_idle_timeout: 400ms, body_min_rate: 1000 }", transport))

	t.Run("stalled body", func(t *testing.T) {
		conn := dial(t, h)
		start := time.Now()
		fmt.Fprint(conn, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
		resp, body := readResponse(t, conn)
		took := time.Since(start)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"error"`) {
			t.Fatalf("status %d %q, want 408 with a JSON error", resp.StatusCode, body)
		}
		// Once: the answer does not wait a second idle timeout for the
		// rest of a body that already failed.
		if took < 350*time.Millisecond || took > 700*time.Millisecond {
			t.Fatalf("408 after %v with a 400ms idle timeout", took)
		}
	})
	t.Run("trickled body", func(t *testing.T) {
		// One byte every 50ms never stalls for 400ms, but averages 20 B/s
		// against a minimum of 1000.
		conn := dial(t, h)
		start := time.Now()
		fmt.Fprint(conn, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		go func() {
			for range 100 {
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		resp, _ := readResponse(t, conn)
		if took := time.Since(start); resp.StatusCode != http.StatusRequestTimeout || took > 2*time.Second {
			t.Fatalf("status %d after %v, want 408 within 2s", resp.StatusCode, took)
		}
	})
	t.Run("stalled body on a static route", func(t *testing.T) {
		// The handler never reads the body; the server's read of what is
		// left after it must be bounded too.
		conn := dial(t, h)
		fmt.Fprint(conn, "POST /static HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("static answer: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Fatalf("connection still open %v after the answer (read: %v), want closed within about 400ms", time.Since(start), err)
		}
	})
	t.Run("fair and fast bodies pass", func(t *testing.T) {
		conn := dial(t, h)
		fmt.Fprint(conn, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
		for range 10 { // 200 bytes every 30ms: about 6,600 B/s
			_, _ = conn.Write([]byte(strings.Repeat("y", 200)))
			time.Sleep(30 * time.Millisecond)
		}
		if resp, body := readResponse(t, conn); resp.StatusCode != 200 || body != "2000" {
			t.Fatalf("fair body: %d %q", resp.StatusCode, body)
		}
		resp, body := h.do("POST", h.proxy+"/api/x", strings.Repeat("z", 8<<20))
		if resp.StatusCode != 200 || body != fmt.Sprint(8<<20) {
			t.Fatalf("fast 8 MiB body: %d %q", resp.StatusCode, body)
		}
	})
	// Every upstream handler has returned: no upstream request is held.
	deadline := time.Now().Add(2 * time.Second)
	for up.done.Load() != 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d, w := up.done.Load(), up.whole.Load(); d != 4 || w != 2 {
		t.Fatalf("upstream handlers returned %d (want 4), whole bodies %d (want 2)", d, w)
	}
	if got := metric(t, h, `sluice_requests_total{code="408",route="api"}`); got != "2" {
		t.Fatalf("408s counted %q, want 2", got)
	}
	if got := metric(t, h, `sluice_upstream_duration_seconds_count{route="api"}`); got != "2" {
		t.Fatalf("upstream exchanges counted %q, want 2 (the 408s are not the upstream's)", got)
	}
}

// TestConnectionCap: with max_connections open, one more connection is
// answered 503 and closed; once one closes, a new one is served.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	h := startGateway(t, bodyConfig(up.URL, "{ max_connections: 3 }"))
	held := []net.Conn{dial(t, h), dial(t, h)}
	// The third sends a body slowly and stays open.
	third := dial(t, h)
	fmt.Fprint(third, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
	held = append(held, third)
	refused := 0
	over := dial(t, h)
	resp, body := readResponse(t, over)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "too many connections") {
		t.Fatalf("connection over the cap: %d %q, want 503", resp.StatusCode, body)
	}
	refused++
	held[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		conn := dial(t, h)
		fmt.Fprint(conn, "GET /static HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := readResponse(t, conn)
		if resp.StatusCode == 200 {
			break
		}
		refused++
		if time.Now().After(deadline) {
			t.Fatalf("no connection served within 3s of one closing: %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := metric(t, h, "sluice_connections_refused_total"); got != fmt.Sprint(refused) {
		t.Fatalf("sluice_connections_refused_total %q, want %d", got, refused)
	}
}
