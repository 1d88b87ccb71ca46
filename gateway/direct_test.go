package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDirectProxyMatchesReverseProxy sends the same raw requests through
// the fast transport (whose plain-HTTP routes the gateway proxies without
// ReverseProxy's request clone) and through the standard one (ReverseProxy),
// and wants the upstream to see the same requests and the client to get the
// same answers: hop-by-hop headers and those Connection names dropped both
// ways, the client's forwarding headers replaced, "Te: trailers" kept, no
// User-Agent added, queries cleaned, trailers both ways.
func TestDirectProxyMatchesReverseProxy(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := w.Header()
		h.Set("Connection", "X-Secret")
		h.Set("X-Secret", "s")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h["X-Multi"] = []string{"1", "2"}
		h.Set("Trailer", "X-Sum")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "uri": r.RequestURI, "host": r.Host, "header": r.Header, "trailer": r.Trailer, "body": string(body),
		})
		h.Set("X-Sum", "42")
		h.Set(http.TrailerPrefix+"X-Late", "late")
	}))
	t.Cleanup(up.Close)
	requests := map[string]string{
		"hop-by-hop and forwarding": "GET /h?a=1&b=2 HTTP/1.1\r\nHost: front.example\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\n" +
			"Keep-Alive: 300\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nTe: trailers, deflate\r\n" +
			"Forwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n" +
			"X-Real-Ip: 6.6.6.6\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n",
		"upgrade without Connection: upgrade": "GET /h HTTP/1.1\r\nHost: front.example\r\nUpgrade: websocket\r\nUser-Agent: ua\r\n\r\n",
		"semicolon in the query":              "GET /h?a=1;b=2&c=3 HTTP/1.1\r\nHost: front.example\r\n\r\n",
		"bad escape in the query":             "GET /h?a=%zz&b=2 HTTP/1.1\r\nHost: front.example\r\n\r\n",
		"chunked body with a trailer": "POST /h HTTP/1.1\r\nHost: front.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Req-Sum: 9\r\n\r\n",
		"body of known length": "PUT /h HTTP/1.1\r\nHost: front.example\r\nContent-Length: 5\r\nConnection: X-Private\r\nX-Private: p\r\n\r\nhello",
	}
	got := map[string]map[string]string{} // transport -> request -> answer
	for _, tr := range []string{"fast", "standard"} {
		h := startGateway(t, withTransport(tr, "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\", token: x }\nlog: { access: false }\n"+
			"routes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \""+up.URL+"\" } }\n"))
		got[tr] = map[string]string{}
		for name, req := range requests {
			got[tr][name] = rawExchange(t, strings.TrimPrefix(h.proxy, "http://"), req)
		}
	}
	for name := range requests {
		if fast, std := got["fast"][name], got["standard"][name]; fast != std {
			t.Errorf("%s:\nfast:\n%s\nstandard:\n%s", name, fast, std)
		}
	}
	// What both must do, so that agreeing is not agreeing on a fault.
	hop := got["fast"]["hop-by-hop and forwarding"]
	for _, want := range []string{`"Te":["trailers"]`, `"X-Forwarded-For":["127.0.0.1"]`, `"X-Forwarded-Host":["front.example"]`, `"X-Multi":["a","b"]`,
		"X-Multi: 1\nX-Multi: 2\n", "trailer X-Sum: 42\n", "trailer X-Late: late\n"} {
		if !strings.Contains(hop, want) {
			t.Errorf("answer lacks %s:\n%s", want, hop)
		}
	}
	for _, unwanted := range []string{"X-Private", "Keep-Alive", "Proxy-", "Forwarded\"", "evil", "6.6.6.6", "User-Agent", "X-Secret", "Connection"} {
		if strings.Contains(hop, unwanted) {
			t.Errorf("answer holds %s:\n%s", unwanted, hop)
		}
	}
	if chunked := got["fast"]["chunked body with a trailer"]; !strings.Contains(chunked, `"body":"abc"`) {
		t.Errorf("chunked body not forwarded:\n%s", chunked)
	}
}

// rawExchange sends the raw request on a new connection to addr and returns
// the answer: status, headers (but Date), body and trailers, one per line.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Del("Date")
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	_ = resp.Header.Write(&b)
	fmt.Fprintf(&b, "%s\n", body)
	for _, k := range slices.Sorted(maps.Keys(resp.Trailer)) {
		for _, v := range resp.Trailer[k] {
			fmt.Fprintf(&b, "trailer %s: %s\n", k, v)
		}
	}
	return strings.ReplaceAll(b.String(), "\r\n", "\n")
}
