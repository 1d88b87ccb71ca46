package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readmeBlocks returns the fenced code blocks in language lang of the
// README.md section under heading, so that the tests run exactly what the
// README documents.
func readmeBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	var blocks []string
	for {
		var block string
		if _, section, ok = strings.Cut(section, "```"+lang+"\n"); !ok {
			break
		}
		if block, section, ok = strings.Cut(section, "\n```"); !ok {
			t.Fatalf("README.md: unterminated ```%s block", lang)
		}
		blocks = append(blocks, block+"\n")
	}
	if len(blocks) == 0 {
		t.Fatalf("README.md has no ```%s block under %q", lang, heading)
	}
	return blocks
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNginx runs nginx in the foreground with the README's auth_request
// server block, its addresses replaced, under a prefix of its own; it is
// stopped when the test ends. It returns nginx's address.
func startNginx(t *testing.T, decisionAddr, upstreamAddr string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("SLUICE_TEST_REQUIRE_NGINX") == "1" {
			t.Fatal("no nginx installed and SLUICE_TEST_REQUIRE_NGINX=1")
		}
		t.Skip("no nginx installed; skipping the nginx integration test")
	}
	addr := freePort(t)
	server := readmeBlocks(t, "### nginx (auth_request)", "nginx")[0]
	for old, repl := range map[string]string{
		"listen 8080;":   "listen " + addr + ";",
		"127.0.0.1:8081": decisionAddr,
		"127.0.0.1:9000": upstreamAddr,
	} {
		if !strings.Contains(server, old) {
			t.Fatalf("the README's nginx block lacks %q", old)
		}
		server = strings.ReplaceAll(server, old, repl)
	}
	dir := t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log info;
events { worker_connections 512; }
http {
    access_log %[1]s/logs/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
%[2]s}
`, dir, server)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-e", filepath.Join(dir, "logs", "error.log"), "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "logs", "error.log"), "-c", path)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), logs)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			logs, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out.String(), logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s within 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNginxAuthRequest puts a real nginx, configured with the README's
// auth_request snippet, in front of an upstream, with Sluice as the decision
// service: exactly the limit is admitted (also under concurrency), rejected
// requests get a 429 with Retry-After and the rate-limit headers and never
// reach the upstream, and a client's own X-Forwarded-For does not move it to
// another key.
func TestNginxAuthRequest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{} // request id -> times the upstream saw it
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Request-Id")]++
		mu.Unlock()
		_, _ = io.WriteString(w, "from upstream")
	}))
	t.Cleanup(up.Close)
	h := startGateway(t, `
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "t0k" }
log: { access: false }
decision: { listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1] }
policies:
  per-ip: { limit: 5, window: 1h }
  per-user: { key: ["header:X-User"], on_missing_key: ip, limit: 7, window: 1h }
routes:
  - { name: app, match: { path_prefix: /app }, respond: { status: 204 }, policies: [per-ip] }
  - { name: users, match: { path_prefix: /users }, respond: { status: 204 }, policies: [per-user] }
`)
	nginx := "http://" + startNginx(t, h.g.DecisionAddr(), strings.TrimPrefix(up.URL, "http://"))
	// The client dials from 127.0.0.3, nginx reaches Sluice from 127.0.0.1:
	// the key must be the client's address, not nginx's, nor the one the
	// client writes into X-Forwarded-For.
	client := newClient()
	client.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}).DialContext
	t.Cleanup(client.CloseIdleConnections)
	get := func(path, id string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", nginx+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-Id", id)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	wantUpstream := func(ids map[string]bool) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for id, n := range seen {
			if !ids[id] || n != 1 {
				t.Errorf("upstream saw %q %d times; admitted: %v", id, n, ids[id])
			}
		}
		for id := range ids {
			if seen[id] != 1 {
				t.Errorf("upstream did not see admitted request %q", id)
			}
		}
	}

	t.Run("sequential", func(t *testing.T) {
		admitted := map[string]bool{}
		for n := range 8 {
			id := fmt.Sprintf("seq-%d", n)
			// A forged X-Forwarded-For changes nothing.
			resp, body := get("/app/items?n=1", id, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", n))
			if n < 5 {
				if resp.StatusCode != 200 || body != "from upstream" {
					t.Fatalf("request %d: %d %q, want 200 from upstream", n, resp.StatusCode, body)
				}
				if got, want := resp.Header.Get("X-RateLimit-Remaining"), fmt.Sprint(4-n); got != want {
					t.Fatalf("request %d: X-RateLimit-Remaining %q, want %q", n, got, want)
				}
				if got := resp.Header.Get("X-RateLimit-Limit"); got != "5" {
					t.Fatalf("X-RateLimit-Limit %q, want 5", got)
				}
				if got := resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=5;w=3600` {
					t.Fatalf("RateLimit-Policy %q", got)
				}
				admitted[id] = true
				continue
			}
			if resp.StatusCode != 429 {
				t.Fatalf("request %d: status %d, want 429; body %s", n, resp.StatusCode, body)
			}
			var e struct {
				Error      string `json:"error"`
				RetryAfter int    `json:"retry_after_seconds"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "rate limit exceeded" || e.RetryAfter < 1 {
				t.Fatalf("429 body %q (%v)", body, err)
			}
			if got := resp.Header.Get("Retry-After"); got != fmt.Sprint(e.RetryAfter) {
				t.Fatalf("Retry-After %q, body says %d", got, e.RetryAfter)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("429 Content-Type %q", ct)
			}
			for hdr, want := range map[string]string{"Cache-Control": "no-store", "X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "5"} {
				if got := resp.Header.Get(hdr); got != want {
					t.Fatalf("429 %s %q, want %q", hdr, got, want)
				}
			}
			if got := resp.Header.Get("RateLimit"); !strings.HasPrefix(got, `"per-ip";r=0;t=`) {
				t.Fatalf("429 RateLimit %q", got)
			}
		}
		wantUpstream(admitted)
		if u := keyUsage(t, h, "per-ip", "127.0.0.3"); u["count"] != 5.0 || u["rejected"] != 3.0 {
			t.Fatalf("usage of 127.0.0.3: %v, want count 5 rejected 3", u)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		const callers = 30
		var wg sync.WaitGroup
		codes := make([]int, callers)
		for i := range callers {
			wg.Go(func() {
				resp, _ := get("/users/me", fmt.Sprintf("con-%d", i), "X-User", "alice")
				codes[i] = resp.StatusCode
			})
		}
		wg.Wait()
		admitted := map[string]bool{}
		mu.Lock()
		for id := range seen {
			if strings.HasPrefix(id, "seq-") {
				admitted[id] = true
			}
		}
		mu.Unlock()
		ok, limited := 0, 0
		for i, c := range codes {
			switch c {
			case 200:
				ok++
				admitted[fmt.Sprintf("con-%d", i)] = true
			case 429:
				limited++
			default:
				t.Errorf("caller %d: status %d", i, c)
			}
		}
		if ok != 7 || limited != callers-7 {
			t.Fatalf("%d admitted and %d limited, want 7 and %d", ok, limited, callers-7)
		}
		wantUpstream(admitted)
		if u := keyUsage(t, h, "per-user", "header:x-user:alice"); u["count"] != 7.0 || u["rejected"] != float64(callers-7) {
			t.Fatalf("usage of alice: %v", u)
		}
	})

	t.Run("not limited", func(t *testing.T) {
		resp, body := get("/elsewhere", "free-1")
		if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("unrouted path: %d %q, X-RateLimit-Limit %q", resp.StatusCode, body, resp.Header.Get("X-RateLimit-Limit"))
		}
	})
}
