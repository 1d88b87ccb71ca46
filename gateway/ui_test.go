package gateway_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser returns a headless Chromium context, skipping the test when no
// Chromium is installed (unless SLUICE_TEST_REQUIRE_BROWSER=1).
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("SLUICE_TEST_REQUIRE_BROWSER") == "1" {
			t.Fatal("no Chromium installed and SLUICE_TEST_REQUIRE_BROWSER=1")
		}
		t.Skip("no Chromium installed; skipping the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// TestDashboardInBrowser signs in to the dashboard in headless Chromium,
// sees a key appear after traffic, resets it with its button, increments a
// counter, and shows and resets counters beyond 2^53 exactly.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	h := startGateway(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	if err := chromedp.Do(ctx,
		chromedp.Navigate(h.admin+"/ui/"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), "secret"),
		chromedp.Click(css(`#signin-form button[type="submit"]`)),
		chromedp.WaitVisible(css("#app")),
	); err != nil {
		t.Fatalf("signing in: %v", err)
	}
	for range 3 {
		h.get("/keyed", "X-API-Key", "browser-key")
	}
	row := `#keys tr[data-key="header:x-api-key:browser-key"]`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(row))); err != nil {
		t.Fatalf("waiting for the key to appear: %v", err)
	}
	count, err := chromedp.Run(ctx, chromedp.Text(css(row+" td.count")))
	if err != nil || strings.TrimSpace(count) != "2" {
		t.Fatalf("the key's count shows %q (%v), want 2", count, err)
	}
	active, err := chromedp.Run(ctx, chromedp.Text(css("#active-keys")))
	if err != nil || !strings.Contains(active, "About 1 key active") {
		t.Fatalf("the active keys show %q (%v), want about 1 key", active, err)
	}
	if dir := os.Getenv("SLUICE_SCREENSHOT_DIR"); dir != "" {
		// Regenerates docs/dashboard.png: SLUICE_SCREENSHOT_DIR=$PWD/../docs go test ./gateway -run DashboardInBrowser
		h.adminDo("PUT", "/v1/counters/signups", `{"value":42,"min":0,"max":1000}`)
		_ = h.g.FlushHistory(context.Background())
		_ = chromedp.Do(ctx, chromedp.Sleep(2500*time.Millisecond)) // one refresh
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(css(row+` button[data-action="reset"]`)),
		chromedp.WaitNotPresent(css(row)),
	); err != nil {
		t.Fatalf("resetting the key: %v", err)
	}
	resp, body := h.adminDo("GET", "/v1/policies/by-key/keys/header:x-api-key:browser-key", "")
	if resp.StatusCode != 200 || decode[map[string]any](t, body)["count"] != float64(0) {
		t.Fatalf("after the reset button: %s", body)
	}

	h.adminDo("PUT", "/v1/counters/visits", `{"value":1}`)
	counter := `#counters tr[data-counter="visits"]`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(counter))); err != nil {
		t.Fatalf("waiting for the counter: %v", err)
	}
	// The table is redrawn every 2 seconds: find and click in one script.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.querySelector('`+counter+` button[data-action="increment"]').click()`)); err != nil {
		t.Fatalf("incrementing the counter: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#counters tr[data-counter="visits"] td.value').textContent === "2"`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the counter never showed 2: %v", err)
	}
	_, body = h.adminDo("GET", "/v1/counters/visits", "")
	if decode[map[string]any](t, body)["value"] != float64(2) {
		t.Fatalf("after the + button the counter is %s", body)
	}

	checkInt64Exact(t, ctx, h)

	// On a phone-sized screen nothing spills sideways out of the page.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Sleep(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Fatal("the dashboard is wider than a 390px phone screen")
	}
}

// TestDashboardKeepsTheTokenOutOfURLs: the page is served without a token
// and with a restrictive Content-Security-Policy.
func TestDashboardHeaders(t *testing.T) {
	t.Parallel()
	h := startGateway(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	resp, body := h.do("GET", h.admin+"/ui/", "")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") || !strings.Contains(body, "app.js") {
		t.Fatalf("dashboard headers %v", resp.Header)
	}
	_, js := h.do("GET", h.admin+"/ui/app.js", "")
	if !strings.Contains(js, "sessionStorage") || strings.Contains(js, "document.cookie") || strings.Contains(js, "?token=") {
		t.Fatal("app.js must keep the token in sessionStorage only")
	}
}

// checkInt64Exact: counters beyond 2^53 show digit for digit, and the
// Reset button sends their bounds back exactly.
func checkInt64Exact(t *testing.T, ctx context.Context, h *harness) {
	t.Helper()
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	h.adminDo("PUT", "/v1/counters/huge", `{"value":9223372036854775806,"min":-9223372036854775808,"max":9223372036854775807}`)
	h.adminDo("PUT", "/v1/counters/near", `{"value":9007199254740993,"max":9007199254740993}`)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`#counters tr[data-counter="near"]`)), chromedp.WaitVisible(css(`#counters tr[data-counter="huge"]`))); err != nil {
		t.Fatalf("waiting for the big counters: %v", err)
	}
	// The table is redrawn every 2 seconds: read it in one script.
	for name, want := range map[string]string{"huge": "9223372036854775806", "near": "9007199254740993"} {
		shown := `document.querySelector('#counters tr[data-counter="` + name + `"] td.value').textContent`
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](shown+` === "`+want+`"`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](shown))
			t.Fatalf("%s shows %q, want %s", name, got, want)
		}
	}
	for name, want := range map[string]string{
		"huge": `{"name":"huge","value":0,"min":-9223372036854775808,"max":9223372036854775807}`,
		"near": `{"name":"near","value":0,"min":null,"max":9007199254740993}`,
	} {
		click := `document.querySelector('#counters tr[data-counter="` + name + `"] button[data-action="reset-counter"]').click()`
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](click)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body := h.adminDo("GET", "/v1/counters/"+name, "")
			if strings.TrimSpace(body) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after Reset: %s, want %s", body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
