package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

// writeConfig writes yaml to a temporary config file and returns its path.
func writeConfig(t testing.TB, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// harness is one gateway started in process on loopback ports.
type harness struct {
	t      testing.TB
	g      *gateway.Gateway
	path   string
	proxy  string // base URL
	admin  string // base URL
	token  string
	client *http.Client
	logs   *syncBuffer
}

type syncBuffer struct {
	ch chan string
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	select {
	case b.ch <- string(p):
	default:
	}
	return len(p), nil
}

// startGateway starts a gateway on cfg (which must listen on 127.0.0.1:0).
func startGateway(t testing.TB, cfg string, environ ...string) *harness {
	t.Helper()
	return startGatewayLogs(t, cfg, nil, environ...)
}

// logBuffer collects logs safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startGatewayLogs is startGateway with the logs written to w.
func startGatewayLogs(t testing.TB, cfg string, w *logBuffer, environ ...string) *harness {
	t.Helper()
	opts := gateway.Options{ConfigPath: writeConfig(t, cfg), Environ: environ}
	if w != nil {
		opts.LogOutput = w
	}
	return startGatewayWith(t, opts)
}

// startGatewayWith starts a gateway with opts (no environment unless
// opts.Environ says so) and shuts it down when the test ends.
func startGatewayWith(t testing.TB, opts gateway.Options) *harness {
	t.Helper()
	logs := &syncBuffer{ch: make(chan string, 10000)}
	if opts.LogOutput == nil {
		opts.LogOutput = logs
	}
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	g, err := gateway.New(opts)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, g: g, path: opts.ConfigPath, proxy: "http://" + g.ProxyAddr(), admin: "http://" + g.AdminAddr(), token: g.AdminToken(), logs: logs,
		client: newClient()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
		h.client.CloseIdleConnections()
	})
	return h
}

func newClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}
}

func (h *harness) do(method, url string, body string, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

func (h *harness) get(path string, hdr ...string) (*http.Response, string) {
	return h.do(http.MethodGet, h.proxy+path, "", hdr...)
}

// adminDo calls the admin API with the token.
func (h *harness) adminDo(method, path, body string) (*http.Response, string) {
	return h.do(method, h.admin+path, body, "Authorization", "Bearer "+h.token)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

func wantStatus(t *testing.T, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, want, body)
	}
}

// wantJSONError checks a JSON error answer.
func wantJSONError(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	wantStatus(t, resp, body, status)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if e := decode[map[string]any](t, body); e["error"] == nil || e["error"] == "" {
		t.Fatalf("body %s lacks an error", body)
	}
}

// upstream is the test backend.
func newUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.Path, "raw": r.URL.RawPath, "query": r.URL.RawQuery, "host": r.Host,
			"xff": r.Header.Get("X-Forwarded-For"), "xfh": r.Header.Get("X-Forwarded-Host"), "xfp": r.Header.Get("X-Forwarded-Proto"),
		})
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		wait := 3 * time.Second
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil {
			wait = time.Duration(ms) * time.Millisecond
		}
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "late")
	})
	mux.HandleFunc("/die", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the body is chunked, so only an aborted
		// connection can tell the client that it was cut short.
		_, _ = io.WriteString(w, "part-1;")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, err := brw.ReadString('\n')
		if err == nil {
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// rawUpgrade opens an upgraded connection through the proxy and returns it.
func rawUpgrade(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", path)
	return conn, bufio.NewReader(conn)
}
