package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/gateway"
)

// TestReadyzDuringDrain: from the first moment of a drain after SIGTERM,
// /readyz answers 503, while the in-flight request still finishes.
func TestReadyzDuringDrain(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	path := writeConfig(t, strings.Replace(reloadConfig(up.URL, 3, ""), "log: { access: false }", "log: { format: json }", 1))
	p := startBinary(t, path)
	h := p.harness(t)
	if resp, body := h.do("GET", h.admin+"/readyz", ""); resp.StatusCode != 200 {
		t.Fatalf("before SIGTERM: /readyz %d %s", resp.StatusCode, body)
	}
	result := make(chan string, 1)
	go func() {
		resp, err := h.client.Get(h.proxy + "/slow?ms=1500")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	time.Sleep(100 * time.Millisecond) // the slow request is in flight
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	// The signal is handled asynchronously: allow it 200ms to arrive, then
	// every probe until the in-flight request ends must say 503.
	saw503 := false
	for time.Since(sent) < time.Second {
		resp, err := h.client.Get(h.admin + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain: %v (the admin listener must answer until the drain ends)", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 503 && strings.Contains(string(b), `"draining"`):
			saw503 = true
		case saw503:
			t.Fatalf("/readyz went back to %d %s during the drain", resp.StatusCode, b)
		case time.Since(sent) > 200*time.Millisecond:
			t.Fatalf("/readyz %d %s %v after SIGTERM, want 503 draining", resp.StatusCode, b, time.Since(sent).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := <-result; got != "200 late" {
		t.Fatalf("in-flight request during the drain: %s", got)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
		p.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("sluice did not exit within 5s of SIGTERM")
	}
}

// TestAdminHostCheck: a DNS-rebinding page reaches the admin listener under
// its own host name; the admin listener answers only IP addresses,
// localhost and admin.allowed_hosts.
func TestAdminHostCheck(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"),
		`admin: { listen: "127.0.0.1:0", token: "secret" }`,
		`admin: { listen: "127.0.0.1:0", token: "secret", allowed_hosts: [sluice-admin.monitoring.svc] }`, 1)
	h := startGateway(t, cfg)
	_, port, _ := strings.Cut(strings.TrimPrefix(h.admin, "http://"), ":")
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"LOCALHOST", 200},
		{"[::1]:" + port, 200},
		{"10.1.2.3:9090", 200}, // a kubelet probe names the pod's IP
		{"sluice-admin.monitoring.svc:" + port, 200},
		{"sluice-admin.monitoring.svc.", 200},
		{"attacker.example:" + port, 421},
		{"attacker.example", 421},
		{"localhost.attacker.example:" + port, 421},
		{"127.0.0.1.nip.io:" + port, 421},
		{"sluice-admin.monitoring.svc.attacker.example", 421},
	} {
		for _, path := range []string{"/metrics", "/healthz", "/readyz", "/ui/", "/v1/policies"} {
			resp, body := h.do("GET", h.admin+path, "", "Host", tc.host, "Authorization", "Bearer secret")
			if resp.StatusCode != tc.want {
				t.Errorf("Host %q %s: %d, want %d; %.100s", tc.host, path, resp.StatusCode, tc.want, body)
			}
			if tc.want == 421 {
				wantJSONError(t, resp, body, 421)
			}
		}
	}
}

// TestAdminListenNeedsToken: an admin listener reachable from other
// machines refuses to start without a token, and says why.
func TestAdminListenNeedsToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen, token string
		ok            bool
	}{
		{"127.0.0.1:0", "", true},
		{"[::1]:0", "", true},
		{"localhost:0", "", true},
		{"0.0.0.0:0", "", false},
		{":0", "", false},
		{"[::]:0", "", false},
		{"10.0.0.5:0", "", false},
		{"0.0.0.0:0", "t0k3n", true},
	} {
		cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"),
			`admin: { listen: "127.0.0.1:0", token: "secret" }`,
			fmt.Sprintf(`admin: { listen: %q, token: %q }`, tc.listen, tc.token), 1)
		g, err := gateway.New(gateway.Options{ConfigPath: writeConfig(t, cfg), Environ: []string{}})
		if err == nil {
			_ = g.Shutdown(context.Background())
		}
		if tc.ok != (err == nil) {
			t.Errorf("admin.listen %q token %q: %v, want ok=%v", tc.listen, tc.token, err, tc.ok)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), "admin.token: required") || !strings.Contains(err.Error(), tc.listen)) {
			t.Errorf("admin.listen %q without a token: %v, want an error that names admin.token and the address", tc.listen, err)
		}
	}
}

// TestGeneratedTokenFile: a loopback admin listener without a token gets
// a random one, written to a file only its owner can read; the log names
// the file and never the token; the file goes at shutdown.
func TestGeneratedTokenFile(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"), `token: "secret"`, `token: ""`, 1)
	dir := filepath.Join(t.TempDir(), "run")
	var logs logBuffer
	h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), Environ: []string{}, TokenDir: dir, LogOutput: &logs})
	token := h.g.AdminToken()
	if len(token) < 32 {
		t.Fatalf("generated token %q is too short", token)
	}
	path := gateway.TokenFile(dir, h.g.AdminAddr())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != token {
		t.Fatalf("token file holds %q, want the token in force", b)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	resp, body := h.adminDo("GET", "/v1/policies", "")
	wantStatus(t, resp, body, 200)
	if out := logs.String(); strings.Contains(out, token) || !strings.Contains(out, path) {
		t.Fatalf("logs must name %s and not hold the token:\n%s", path, out)
	}
	// A reload keeps the generated token and its file.
	if err := h.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if h.g.AdminToken() != token {
		t.Fatal("a reload replaced the generated token")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token file after shutdown: %v, want it removed", err)
	}

	// A directory that others can read is refused: no file, no token in the log.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	var logs2 logBuffer
	h2 := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), Environ: []string{}, TokenDir: open, LogOutput: &logs2})
	if _, err := os.Stat(gateway.TokenFile(open, h2.g.AdminAddr())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token file in a directory open to others: %v, want none", err)
	}
	if out := logs2.String(); strings.Contains(out, h2.g.AdminToken()) || !strings.Contains(out, "open to other users") {
		t.Fatalf("logs must say why no token file was written, without the token:\n%s", out)
	}
}

// TestBuildInfo: /metrics says which build runs, and so does the start-up
// line.
func TestBuildInfo(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	h := startGatewayLogs(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"), &logs)
	_, body := h.do("GET", h.admin+"/metrics", "")
	var line string
	for l := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(l, "sluice_build_info{") {
			line = l
		}
	}
	if !strings.Contains(line, `goversion="`+runtime.Version()+`"`) || !strings.Contains(line, `revision="`) || !strings.Contains(line, `version="`) || !strings.HasSuffix(line, " 1") {
		t.Fatalf("sluice_build_info: %q", line)
	}
	if got := metric(t, h, "sluice_store_up"); got != "1" {
		t.Fatalf("sluice_store_up %q on the memory store, want 1", got)
	}
	out := logs.String()
	i := strings.Index(out, "sluice listening")
	if i < 0 || !strings.Contains(out[i:], "version=") || !strings.Contains(out[i:], "go="+runtime.Version()) {
		t.Fatalf("the start-up line lacks the version:\n%s", out)
	}
}

// TestReadyzHealthy: with a healthy store /readyz is 200 "ready" and says
// the store is up (TestRedisDown covers a store that is down).
func TestReadyzHealthy(t *testing.T) {
	t.Parallel()
	h := startGateway(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	resp, body := h.do("GET", h.admin+"/readyz", "")
	wantStatus(t, resp, body, http.StatusOK)
	if v := decode[map[string]string](t, body); v["status"] != "ready" || v["store"] != "up" {
		t.Fatalf("/readyz %s", body)
	}
}

// TestAccessLog: each line names the client address; with
// log.access_keys it also names the key each policy counted.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	for _, keys := range []bool{false, true} {
		t.Run(fmt.Sprintf("access_keys=%v", keys), func(t *testing.T) {
			t.Parallel()
			cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"), "log: { access: false }",
				fmt.Sprintf("log: { format: json, access_keys: %v }", keys), 1)
			var logs logBuffer
			h := startGatewayLogs(t, cfg, &logs)
			h.get("/keyed", "X-API-Key", "k-123")
			h.get("/limited/x")
			var lines []map[string]any
			for l := range strings.SplitSeq(logs.String(), "\n") {
				var v map[string]any
				if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "request" {
					lines = append(lines, v)
				}
			}
			if len(lines) != 2 {
				t.Fatalf("%d access lines, want 2:\n%s", len(lines), logs.String())
			}
			for _, l := range lines {
				if l["client"] != "127.0.0.1" {
					t.Errorf("client %v, want 127.0.0.1: %v", l["client"], l)
				}
			}
			want := map[bool][2]any{false: {nil, nil}, true: {`by-key="header:x-api-key:k-123"`, `wide="127.0.0.1" per-ip="127.0.0.1"`}}[keys]
			if lines[0]["keys"] != want[0] || lines[1]["keys"] != want[1] {
				t.Fatalf("keys %v and %v, want %v", lines[0]["keys"], lines[1]["keys"], want)
			}
		})
	}
}

// TestFailedAlertsAreLogged: a delivery that fails for good is logged
// with its attempt count, and without the webhook URL (which often holds a
// secret).
func TestFailedAlertsAreLogged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status, attempts int
	}{{500, 4}, {404, 1}} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			t.Parallel()
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tc.status) }))
			defer hook.Close()
			const secret = "T000-B000-s3cr3tXYZ"
			cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"), "log: { access: false }", "log: { format: json, access: false }", 1) +
				fmt.Sprintf("alerts:\n  - { name: busy, counter: jobs, value: 1, webhook: %q }\n", hook.URL+"/services/"+secret)
			var logs logBuffer
			h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), Environ: []string{}, LogOutput: &logs, AlertBackoff: time.Millisecond})
			resp, body := h.adminDo("PUT", "/v1/counters/jobs", `{"value":5}`)
			wantStatus(t, resp, body, 200)
			deadline := time.Now().Add(5 * time.Second)
			var line map[string]any
			for line == nil && time.Now().Before(deadline) {
				for l := range strings.SplitSeq(logs.String(), "\n") {
					var v map[string]any
					if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "alert delivery failed" {
						line = v
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			if line == nil {
				t.Fatalf("no log line for the failed delivery:\n%s", logs.String())
			}
			if line["alert"] != "busy" || line["attempts"] != float64(tc.attempts) || !strings.Contains(fmt.Sprint(line["reason"]), strconv.Itoa(tc.status)) {
				t.Fatalf("log line %v, want alert busy after %d attempts with the status", line, tc.attempts)
			}
			if strings.Contains(logs.String(), secret) {
				t.Fatalf("the webhook URL's secret is in the logs:\n%s", logs.String())
			}
		})
	}
}

// TestRedisLogsThroughSlog: go-redis's own log lines come out of the
// gateway's logger, as JSON when the log is JSON. Not parallel: go-redis
// has one logger per process, which the gateway created last owns.
func TestRedisLogsThroughSlog(t *testing.T) {
	var logs logBuffer
	cfg := strings.Replace(proxyConfig("http://127.0.0.1:1", "{ backend: memory }"), "log: { access: false }", "log: { format: json }", 1)
	startGatewayLogs(t, cfg, &logs)
	// go-redis logs a sub-millisecond expiry it truncates, then the dial
	// that fails.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	_ = rdb.Set(context.Background(), "k", "v", 500*time.Microsecond).Err()
	var line map[string]any
	for l := range strings.SplitSeq(logs.String(), "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["component"] == "go-redis" && strings.Contains(fmt.Sprint(v["msg"]), "truncating to 1ms") {
			line = v
		}
	}
	if line == nil || line["level"] != "WARN" {
		t.Fatalf("go-redis line %v, want it as a JSON WARN line:\n%s", line, logs.String())
	}
}

// TestVersionStamped: a release build stamps its version and revision with
// -ldflags -X, and `sluice version` prints them with the Go version.
func TestVersionStamped(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "sluice")
	pkg := "github.com/sluice-gateway/sluice/internal/version"
	out, err := exec.Command("go", "build", "-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".revision=0123abc", "-o", bin, "../cmd/sluice").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	out, err = exec.Command(bin, "version").CombinedOutput()
	if want := "sluice v9.8.7 (revision 0123abc, " + runtime.Version() + ")\n"; err != nil || string(out) != want {
		t.Fatalf("sluice version: %v %q, want %q", err, out, want)
	}
}

// TestShutdownDelayKeepsServing: with shutdown_delay, a SIGTERM turns
// /readyz to 503 at once while new requests are still served, so clients
// are not refused before a load balancer has stopped sending; then the
// gateway exits 0.
func TestShutdownDelayKeepsServing(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	path := writeConfig(t, "shutdown_delay: 1500ms\n"+strings.Replace(reloadConfig(up.URL, 1000, ""), "log: { access: false }", "log: { format: json }", 1))
	p := startBinary(t, path)
	h := p.harness(t)
	if resp, body := h.get("/hello"); resp.StatusCode != 200 {
		t.Fatalf("before SIGTERM: %d %s", resp.StatusCode, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) for the drain to start, as /readyz shows it.
	deadline := time.Now().Add(time.Second)
	for {
		resp, body := h.do("GET", h.admin+"/readyz", "")
		if resp.StatusCode == 503 && strings.Contains(body, `"draining"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %s a second after SIGTERM, want 503 draining", resp.StatusCode, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Well inside the delay, but past the moment a gateway without one has
	// closed its listeners, a new connection is still served.
	time.Sleep(600 * time.Millisecond)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := fresh.Get(h.proxy + "/hello")
	if err != nil {
		t.Fatalf("a new request during shutdown_delay: %v, want it served", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello\n" {
		t.Fatalf("a new request during shutdown_delay: %d %q, want 200 hello", resp.StatusCode, b)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
		p.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("sluice did not exit within 10s of SIGTERM")
	}
}
