package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/cli"
)

const testConfig = `
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { format: json, access: false }
policies:
  by-key:
    key: ["header:X-API-Key"]
    on_missing_key: reject
    algorithm: sliding_log
    limit: 2
    window: 1m
routes:
  - name: keyed
    match: { path_prefix: /keyed }
    respond: { status: 201, body: "keyed\n" }
    policies: [by-key]
`

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineWriter hands each log line to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- line:
		default:
		}
	}
}

// served is `sluice serve` running in process.
type served struct {
	proxy, admin string
}

// mustServe runs `sluice serve -config cfg` in process until the test ends.
func mustServe(t *testing.T, cfg string, environ []string, tokenDir string) served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lineWriter{lines: make(chan string, 1000)}
	p := &cli.Program{Stdout: io.Discard, Stderr: logs, Environ: environ, TokenDir: tokenDir}
	done := make(chan int, 1)
	go func() { done <- p.Run(ctx, []string{"serve", "-config", writeConfig(t, cfg)}) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d after its context ended, want 0", code)
		}
	})
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-logs.lines:
			var v map[string]any
			if json.Unmarshal([]byte(line), &v) == nil && v["msg"] == "sluice listening" {
				return served{proxy: v["proxy"].(string), admin: v["admin"].(string)}
			}
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d before listening", code)
		case <-timeout:
			t.Fatal("serve did not listen within 10s")
		}
	}
}

// run runs the program on args and returns its exit code and output.
func run(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := (&cli.Program{Stdout: &out, Stderr: &errOut, Environ: environ}).Run(context.Background(), args)
	return code, out.String(), errOut.String()
}

func TestAdminClient(t *testing.T) {
	t.Parallel()
	s := mustServe(t, testConfig, []string{}, "")
	mustRun := func(want int, args ...string) string {
		t.Helper()
		full := append([]string{args[0], "-admin", s.admin, "-token", "secret"}, args[1:]...)
		code, out, errOut := run(t, []string{}, full...)
		if code != want {
			t.Fatalf("sluice %v: exit %d, want %d; %s%s", args, code, want, out, errOut)
		}
		return out + errOut
	}
	get := func(key string) {
		req, _ := http.NewRequest("GET", "http://"+s.proxy+"/keyed", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for range 3 {
		get("2001:db8::/64")
	}
	get("bob")
	out := mustRun(0, "keys", "top", "by-key")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.Contains(lines[1], "2001:db8::/64") || !strings.Contains(lines[1], " 2 ") ||
		lines[3] != "2 keys active in the window (an estimate)" {
		t.Fatalf("keys top:\n%s", out)
	}
	if out := mustRun(0, "keys", "get", "by-key", "header:x-api-key:2001:db8::/64"); !strings.Contains(out, `"rejected":1`) {
		t.Fatalf("keys get: %s", out)
	}
	mustRun(0, "keys", "reset", "by-key", "header:x-api-key:2001:db8::/64")
	if out := mustRun(0, "keys", "get", "by-key", "header:x-api-key:2001:db8::/64"); !strings.Contains(out, `"count":0`) {
		t.Fatalf("after reset: %s", out)
	}
	mustRun(0, "counters", "set", "seats", "1", "-max", "3")
	mustRun(0, "counters", "incr", "seats", "2")
	if out := mustRun(1, "counters", "incr", "seats"); !strings.Contains(out, "409") {
		t.Fatalf("incr past max: %s", out)
	}
	if out := mustRun(0, "counters", "decr", "seats"); !strings.Contains(out, `"value":2`) {
		t.Fatalf("decr: %s", out)
	}
	if out := mustRun(0, "counters", "list"); !strings.Contains(out, `"seats"`) {
		t.Fatalf("list: %s", out)
	}
	mustRun(0, "counters", "delete", "seats")
	mustRun(1, "counters", "get", "seats")
	mustRun(2, "counters", "frobnicate")
	if code, _, errOut := run(t, []string{}, "keys", "-admin", s.admin, "-token", "wrong", "top", "by-key"); code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("wrong token: exit %d %s", code, errOut)
	}

	// Negative numbers are arguments, also as flag values.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"counters", "set", "neg", "-5"}, `"value":-5`},
		{[]string{"counters", "set", "neg", "-5", "-min", "-10"}, `"min":-10`},
		{[]string{"counters", "set", "-min", "-10", "neg", "-7"}, `"value":-7`},
		{[]string{"counters", "set", "neg", "--", "-3"}, `"value":-3`},
	} {
		if out := mustRun(0, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("sluice %v: %s, want %s", tc.args, out, tc.want)
		}
	}
}

// TestClientReadsTheGeneratedToken: with no token given, the client uses
// the one a loopback gateway generated.
func TestClientReadsTheGeneratedToken(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run")
	s := mustServe(t, strings.Replace(testConfig, `token: "secret"`, `token: ""`, 1), []string{}, dir)
	var out, errOut bytes.Buffer
	p := &cli.Program{Stdout: &out, Stderr: &errOut, Environ: []string{}, TokenDir: dir}
	if code := p.Run(context.Background(), []string{"counters", "-admin", s.admin, "list"}); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
}

// TestHelp: every way of asking for help prints the usage once, to
// stdout, and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"serve", "-h"}, {"validate", "-h"}, {"healthcheck", "-h"}, {"version", "-h"},
		{"keys", "-h"}, {"counters", "-h"}, {"counters", "help"}, {"help", "counters"}, {"help", "healthcheck"},
	} {
		code, out, errOut := run(t, []string{}, args...)
		if code != 0 || errOut != "" || strings.Count(out, "usage:") != 1 {
			t.Errorf("sluice %v: exit %d, stdout %d usages, stderr %q; want 0, one usage on stdout, nothing on stderr:\n%s",
				args, code, strings.Count(out, "usage:"), errOut, out)
		}
	}
	if code, _, errOut := run(t, []string{}, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("an unknown command: exit %d %q", code, errOut)
	}
	if code, _, errOut := run(t, []string{}, "serve", "-bogus"); code != 2 || strings.Count(errOut, "usage:") != 1 {
		t.Errorf("a bad flag: exit %d, %d usages:\n%s", code, strings.Count(errOut, "usage:"), errOut)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, []string{}, "version")
	if code != 0 || !strings.HasPrefix(out, "sluice ") || !strings.Contains(out, "revision ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("sluice version: exit %d %q", code, out)
	}
}

// TestValidate: every error in one pass, each with its line or variable,
// and the warning about a SLUICE_ variable that names no field.
func TestValidate(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "listen: nope\npolicies:\n  p: { limit: 0, window: 30 }\n")
	code, out, errOut := run(t, []string{"SLUICE_LOG__LEVEL=loud", "SLUICE_NOT_A_FIELD=1", "SLUICE_TEST_REDIS=x"}, "validate", "-config", path)
	if code != 1 || out != "" {
		t.Fatalf("exit %d stdout %q, want 1 and nothing", code, out)
	}
	for _, want := range []string{
		path + ":1: listen: must be host:port",
		path + ":3: policies.p.limit: must be > 0",
		path + ":3: policies.p.window: 30 has no unit: use 30s",
		"environment variable SLUICE_LOG__LEVEL: log.level: must be",
		"name=SLUICE_NOT_A_FIELD",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "SLUICE_TEST_REDIS") {
		t.Errorf("the tests' own variables are not config:\n%s", errOut)
	}
	code, out, errOut = run(t, []string{"SLUICE_NOT_A_FIELD=1"}, "validate", "-config", "../../config.yaml")
	if code != 0 || !strings.Contains(out, "valid") || !strings.Contains(errOut, "SLUICE_NOT_A_FIELD") {
		t.Fatalf("validate the default config: exit %d %q %q", code, out, errOut)
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	s := mustServe(t, testConfig, []string{}, "")
	if code, out, errOut := run(t, []string{}, "healthcheck", "-admin", s.admin); code != 0 {
		t.Fatalf("healthcheck of a running gateway: exit %d %s%s", code, out, errOut)
	}
	// From the config, with a wildcard host asked on loopback.
	_, port, _ := strings.Cut(s.admin, ":")
	cfg := writeConfig(t, strings.Replace(testConfig, `listen: "127.0.0.1:0", token`, `listen: "0.0.0.0:`+port+`", token`, 1))
	if code, out, errOut := run(t, []string{}, "healthcheck", "-config", cfg); code != 0 {
		t.Fatalf("healthcheck from the config: exit %d %s%s", code, out, errOut)
	}
	if code, _, errOut := run(t, []string{}, "healthcheck", "-admin", "127.0.0.1:1", "-timeout", "1s"); code != 1 || errOut == "" {
		t.Fatalf("healthcheck of nothing: exit %d %q, want 1 and a reason", code, errOut)
	}
}

// TestKeysTopQuotesKeysItCannotPrint: a key that is not printable UTF-8
// (bytes a header may carry) is printed Go-quoted, losslessly and without
// raw bytes on the terminal, and that quoted form works in keys get and
// keys reset. It was printed as U+FFFD, which named no key.
func TestKeysTopQuotesKeysItCannotPrint(t *testing.T) {
	t.Parallel()
	s := mustServe(t, testConfig, []string{}, "")
	mustRun := func(want int, args ...string) string {
		t.Helper()
		full := append([]string{args[0], "-admin", s.admin, "-token", "secret"}, args[1:]...)
		code, out, errOut := run(t, []string{}, full...)
		if code != want {
			t.Fatalf("sluice %v: exit %d, want %d; %s%s", args, code, want, out, errOut)
		}
		return out + errOut
	}
	for _, k := range []string{"\xff\xfe", "\xff\xfe", "\xfe\xff"} {
		req, _ := http.NewRequest("GET", "http://"+s.proxy+"/keyed", nil)
		req.Header["X-Api-Key"] = []string{k}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	out := mustRun(0, "keys", "top", "by-key")
	quoted := `"header:x-api-key:\xff\xfe"`
	if !strings.Contains(out, quoted) || !strings.Contains(out, `"header:x-api-key:\xfe\xff"`) || strings.Contains(out, "\ufffd") {
		t.Fatalf("keys top:\n%s\nwant both keys quoted", out)
	}
	if out := mustRun(0, "keys", "get", "by-key", quoted); !strings.Contains(out, `"count":2`) {
		t.Fatalf("keys get %s: %s", quoted, out)
	}
	mustRun(0, "keys", "reset", "by-key", quoted)
	if out := mustRun(0, "keys", "get", "by-key", quoted); !strings.Contains(out, `"count":0`) {
		t.Fatalf("after reset: %s", out)
	}
	if out := mustRun(0, "keys", "get", "by-key", `"header:x-api-key:\xfe\xff"`); !strings.Contains(out, `"count":1`) {
		t.Fatalf("the other key: %s", out)
	}
}
