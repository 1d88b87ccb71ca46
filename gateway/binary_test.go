package gateway_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"go.uber.org/goleak"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sluiceBinary builds cmd/sluice once per test run.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	if code == 0 {
		// Every gateway a test started has been shut down: nothing of
		// theirs may still run.
		// The test clients' idle keep-alive connections are theirs, not the
		// gateway's.
		if err := goleak.Find(goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// process is the sluice binary running on a config.
type process struct {
	cmd          *exec.Cmd
	proxy, admin string
	done         chan error
}

// startBinary runs the binary and waits for its "sluice listening" line.
func startBinary(t *testing.T, cfgPath string, env ...string) *process {
	t.Helper()
	return startCommand(t, exec.Command(sluiceBinary(t), "serve", "-config", cfgPath), append([]string{"PATH=" + os.Getenv("PATH")}, env...))
}

// startCommand runs cmd with the environment env and waits for its
// "sluice listening" line (the config must log JSON).
func startCommand(t *testing.T, cmd *exec.Cmd, env []string) *process {
	t.Helper()
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "sluice listening" {
				p.proxy, p.admin = line["proxy"].(string), line["admin"].(string)
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	select {
	case <-ready:
	case err := <-p.done:
		p.done <- err // for the cleanup
		t.Fatalf("sluice exited before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("sluice did not start within 10s")
	}
	return p
}

func (p *process) harness(t *testing.T) *harness {
	return &harness{t: t, proxy: "http://" + p.proxy, admin: "http://" + p.admin, token: "secret", client: newClient()}
}

func TestBinaryDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	path := writeConfig(t, strings.Replace(reloadConfig(up.URL, 3, ""), "log: { access: false }", "log: { format: json }", 1))
	p := startBinary(t, path)
	h := p.harness(t)

	result := make(chan string, 1)
	go func() {
		resp, err := h.client.Get(h.proxy + "/slow?ms=500")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	time.Sleep(100 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := <-result; got != "200 late" {
		t.Fatalf("in-flight request during SIGTERM: %s", got)
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

func TestBinaryReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	cfg := func(limit int) string {
		return strings.Replace(reloadConfig(up.URL, limit, ""), "log: { access: false }", "log: { format: json }", 1)
	}
	path := writeConfig(t, cfg(3))
	p := startBinary(t, path)
	h := p.harness(t)
	for i := range 4 {
		resp, _ := h.get("/hello")
		if want := map[bool]int{true: 200, false: 429}[i < 3]; resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	// An invalid file is refused; the old config stays.
	if err := os.WriteFile(path, []byte("listen: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if resp, _ := h.get("/hello"); resp.StatusCode != 429 {
		t.Fatalf("after an invalid reload: %d, want 429", resp.StatusCode)
	}
	if err := os.WriteFile(path, []byte(cfg(10)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := h.get("/hello")
		if resp.StatusCode == 200 && resp.Header.Get("RateLimit-Policy") == `"per-ip";q=10;w=60` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 5s of SIGHUP: %d %q", resp.StatusCode, resp.Header.Get("RateLimit-Policy"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBinaryValidate(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(sluiceBinary(t), "validate", "-config", "../config.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid") {
		t.Fatalf("validate the default config: %v %s", err, out)
	}
	bad := writeConfig(t, "listen: nope\npolicies: { p: { limit: 0, window: 1s } }\n")
	out, err = exec.Command(sluiceBinary(t), "validate", "-config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("validate a bad config: %v, want exit 1", err)
	}
	for _, want := range []string{"listen: must be host:port", "policies.p.limit: must be > 0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
