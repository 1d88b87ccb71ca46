package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInformationalResponsesReachTheClient: an upstream's 103 Early Hints
// reaches the client with its own headers, before the final answer, and
// the final answer keeps the gateway's RateLimit headers, on both
// transports.
func TestInformationalResponsesReachTheClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Set("X-Final", "yes")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "final")
		}))
		t.Cleanup(up.Close)
		h := startGateway(t, withTransport(transport, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  per-ip: { limit: 10, window: 1m }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: { url: %q }
    policies: [per-ip]
`, up.URL)))
		var mu sync.Mutex
		var hints []textproto.MIMEHeader
		var codes []int
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			codes = append(codes, code)
			hints = append(hints, header)
			return nil
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", h.proxy+"/page", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "final" || resp.Header.Get("X-Final") != "yes" {
			t.Fatalf("final answer %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp.Header.Get("RateLimit") == "" || resp.Header.Get("RateLimit-Policy") == "" {
			t.Fatalf("the final answer lost the RateLimit headers: %v", resp.Header)
		}
		if resp.Header.Get("Link") != "" {
			t.Fatalf("the hint's Link header leaked into the final answer: %v", resp.Header)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(codes) != 1 || codes[0] != http.StatusEarlyHints || hints[0].Get("Link") != "</app.css>; rel=preload" {
			t.Fatalf("informational answers %v %v, want one 103 with its Link", codes, hints)
		}
	})
}

// TestInformationalKeepsTheFinalHead: a 103 before the final answer changes
// nothing in the final answer's head, on both transports: an upgrade's 101
// keeps the RateLimit headers, and an upstream's header of the same name as
// a gateway's is added to the gateway's, as without the 103.
func TestInformationalKeepsTheFinalHead(t *testing.T) {
	const hint = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	for _, tc := range []struct{ name, final, req string }{
		{"upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello",
			"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{"same-name", "HTTP/1.1 200 OK\r\nRateLimit: \"up\";r=1;t=1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, transport string) {
				var withHint atomic.Bool
				addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
					for {
						if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
							break
						}
					}
					if withHint.Load() {
						_, _ = io.WriteString(c, hint)
					}
					_, _ = io.WriteString(c, tc.final)
					_, _ = io.Copy(io.Discard, br) // until the client closes
				})
				h := startGateway(t, withTransport(transport, rawUpstreamConfig(addr, 10)))
				// finalHead sends req and returns the final answer's head,
				// without its Date and with the remaining count blanked.
				finalHead := func() string {
					c, err := net.Dial("tcp", strings.TrimPrefix(h.proxy, "http://"))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.WriteString(c, tc.req)
					r := bufio.NewReader(c)
					for {
						resp, err := http.ReadResponse(r, nil)
						if err != nil {
							t.Fatal(err)
						}
						if resp.StatusCode == http.StatusEarlyHints {
							continue
						}
						resp.Header.Del("Date")
						var b strings.Builder
						fmt.Fprintf(&b, "%d\n", resp.StatusCode)
						_ = resp.Header.Write(&b)
						return regexp.MustCompile(`[rt]=\d+|(Remaining|Reset): \d+`).ReplaceAllString(b.String(), "N")
					}
				}
				want := finalHead()
				withHint.Store(true)
				if got := finalHead(); got != want {
					t.Fatalf("final head after a 103:\n%s\nwithout it:\n%s", got, want)
				}
			})
		})
	}
}

// TestInformationalWithExpectContinue: an upstream that sends 100 and then a
// 103 at once, for a request that expects 100-continue: the client gets one
// 100 (the gateway's own, when the proxy reads the body), no 103, and the
// final answer, on both transports. On the standard transport a 103 passed
// on would be written by the transport's read loop while its write loop,
// reading the body, writes the 100 to the same connection (a data race
// that -race reports, and bytes that may interleave).
func TestInformationalWithExpectContinue(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
			for {
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if l == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
				body := make([]byte, 5)
				if _, err := io.ReadFull(br, body); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"+string(body))
			}
		})
		h := startGateway(t, withTransport(transport, rawUpstreamConfig(addr, 1000)))
		for i := range 50 {
			c, err := net.Dial("tcp", strings.TrimPrefix(h.proxy, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
			br := bufio.NewReader(c)
			first, _ := br.ReadString('\n')
			_, _ = io.WriteString(c, "hello")
			rest, _ := io.ReadAll(br)
			c.Close()
			all := first + string(rest)
			if first != "HTTP/1.1 100 Continue\r\n" || strings.Count(all, "HTTP/1.1 100 ") != 1 || strings.Count(all, "HTTP/1.1 103 ") != 0 ||
				strings.Count(all, "HTTP/1.1 200 OK\r\n") != 1 || !strings.HasSuffix(all, "\r\n\r\nhello") {
				t.Fatalf("request %d: %q", i, all)
			}
		}
	})
}

// rawUpstreamConfig is a gateway config that proxies every path to the
// upstream at addr, under a per-IP limit a minute.
func rawUpstreamConfig(addr string, limit int) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
policies:
  per-ip: { limit: %d, window: 1m }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: { url: "http://%s" }
    policies: [per-ip]
`, limit, addr)
}
