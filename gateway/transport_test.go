package gateway_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

// forEachTransport runs test once per upstream transport, in parallel
// subtests named after them.
func forEachTransport(t *testing.T, test func(t *testing.T, transport string)) {
	t.Parallel()
	for _, tr := range []string{"fast", "standard"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			test(t, tr)
		})
	}
}

// withTransport sets upstream_transport in a config.
func withTransport(transport, cfg string) string {
	return "upstream_transport: " + transport + "\n" + cfg
}

// zeros is an endless reader of zero bytes; wrap it in a LimitReader.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// bigUpstream hashes request bodies (/up) and sends /down?n=N zero bytes.
func bigUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/up":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/down":
			n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			if r.URL.Query().Get("chunked") == "" {
				w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			}
			_, _ = io.Copy(w, io.LimitReader(zeros{}, n))
		case "/early":
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// peakHeap samples the heap every 50ms until stop is called and returns
// the most it grew over its level at the start.
func peakHeap() (stop func() uint64) {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	base, peak := m.HeapAlloc, m.HeapAlloc
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapAlloc)
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak - min(base, peak)
	}
}

// TestLargeBodies streams 200 MB each way through the gateway on both
// transports, fixed length and chunked, with the heap growing by a few
// buffers, not by the body. It runs alone (not in parallel) so that the
// heap is its own.
func TestLargeBodies(t *testing.T) {
	const size = 200 << 20
	want := sha256.New()
	_, _ = io.Copy(want, io.LimitReader(zeros{}, size))
	sum := fmt.Sprintf("%d %x", size, want.Sum(nil))
	up := bigUpstream(t)
	for _, tr := range []string{"fast", "standard"} {
		t.Run(tr, func(t *testing.T) {
			h := startGateway(t, withTransport(tr, proxyConfig(up.URL, "{ backend: memory }")))
			stop := peakHeap()
			for _, length := range []int64{size, -1} {
				req, _ := http.NewRequest("POST", h.proxy+"/api/up", io.NopCloser(io.LimitReader(zeros{}, size)))
				req.ContentLength = length
				resp, err := h.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != sum {
					t.Fatalf("upload (length %d): upstream read %q, want %q", length, b, sum)
				}
			}
			for _, q := range []string{"", "&chunked=1"} {
				resp, err := h.client.Get(h.proxy + "/api/down?n=" + strconv.Itoa(size) + q)
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					t.Fatalf("download %q: %d bytes, %v; want %d", q, n, err, size)
				}
			}
			grew := stop()
			t.Logf("heap grew by at most %.1f MB moving 800 MB", float64(grew)/(1<<20))
			if grew > 32<<20 {
				t.Fatalf("heap grew by %d MB moving 800 MB", grew>>20)
			}
		})
	}
}

// TestEarlyAnswerThroughTheGateway: an upstream that answers 413 before
// reading a 1 GB upload; the client gets the 413, on both transports.
func TestEarlyAnswerThroughTheGateway(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := bigUpstream(t)
		h := startGateway(t, withTransport(tr, proxyConfig(up.URL, "{ backend: memory }")))
		req, _ := http.NewRequest("POST", h.proxy+"/api/early", io.NopCloser(io.LimitReader(zeros{}, 1<<30)))
		req.ContentLength = 1 << 30
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || string(b) != "too large\n" {
			t.Fatalf("got %d %q, want 413 too large", resp.StatusCode, b)
		}
	})
}

// TestTransportConfig: the global switch, the per-route one, and a bad
// value named with its field.
func TestTransportConfig(t *testing.T) {
	t.Parallel()
	base := "routes:\n  - { name: a, match: { path_prefix: /a }, upstream: { url: \"http://127.0.0.1:1\" } }\n" +
		"  - { name: b, match: { path_prefix: /b }, upstream: { url: \"http://127.0.0.1:1\", transport: %s } }\n"
	for _, tc := range []struct {
		name, global, route string
		wantA, wantB        string
		err                 string
	}{
		{"defaults", "", "fast", "fast", "fast", ""},
		{"route falls back", "", "standard", "fast", "standard", ""},
		{"global standard", "standard", "fast", "standard", "fast", ""},
		{"bad global", "quick", "fast", "", "", `upstream_transport: must be fast or standard, got "quick"`},
		{"bad route", "", "h2", "", "", `routes[1].upstream.transport: must be fast or standard, got "h2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(base, tc.route)
			if tc.global != "" {
				cfg = withTransport(tc.global, cfg)
			}
			c, err := gateway.Load(writeConfig(t, cfg), []string{}, slog.New(slog.DiscardHandler))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a, b := c.Routes[0].Upstream.Transport, c.Routes[1].Upstream.Transport; a != tc.wantA || b != tc.wantB {
				t.Fatalf("transports %s, %s; want %s, %s", a, b, tc.wantA, tc.wantB)
			}
		})
	}
}

// BenchmarkProxyTransports: BenchmarkProxy's no-policy case on each
// transport (client, gateway and upstream in one process).
//
//	go test ./gateway -run '^$' -bench ProxyTransports -benchmem
func BenchmarkProxyTransports(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the upstream\n")
	}))
	defer up.Close()
	for _, tr := range []string{"fast", "standard"} {
		b.Run(tr, func(b *testing.B) {
			cfg := "upstream_transport: " + tr + "\nlisten: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\", token: x }\nlog: { access: false }\n" +
				"routes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"" + up.URL + "\" } }\n"
			h := startGateway(b, cfg)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(h.proxy + "/x")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// TestProxyFraming: answers whose framing the transports must get right,
// through the whole gateway, on both.
func TestProxyFraming(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch strings.TrimPrefix(r.URL.Path, "/api/v2") {
			case "/trailers":
				w.Header().Set("Trailer", "X-Sum")
				_, _ = io.WriteString(w, "abc")
				w.(http.Flusher).Flush()
				w.Header().Set("X-Sum", "42")
			case "/head":
				w.Header().Set("Content-Length", "1000")
			case "/bighead":
				w.Header().Set("X-Big", strings.Repeat("a", 2<<20))
			}
		}))
		t.Cleanup(up.Close)
		// Through the api-v2 route, whose timeout is long enough for a
		// loaded machine.
		h := startGateway(t, withTransport(tr, proxyConfig(up.URL, "{ backend: memory }")))

		resp, err := h.client.Get(h.proxy + "/api/v2/trailers")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "abc" || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("trailers: body %q, trailer %q; want abc and 42", b, resp.Trailer.Get("X-Sum"))
		}

		// Over the limit of response head bytes (1 MiB on both).
		resp, body := h.get("/api/v2/bighead")
		wantJSONError(t, resp, body, 502)

		for range 3 { // HEAD leaves nothing on the connection for the next one
			resp, body := h.do("HEAD", h.proxy+"/api/v2/head", "")
			if resp.StatusCode != 200 || resp.ContentLength != 1000 || body != "" {
				t.Fatalf("HEAD: %d, length %d, body %q", resp.StatusCode, resp.ContentLength, body)
			}
			resp, body = h.get("/api/v2/users")
			wantStatus(t, resp, body, 200)
		}
	})
}

// TestExpectContinueThroughTheGateway: a client that asks for 100 Continue
// sends its body only if the upstream reads it; an upstream that answers
// 403 first gets no body, and neither does the gateway.
func TestExpectContinueThroughTheGateway(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/reject") {
				http.Error(w, "no", http.StatusForbidden)
				return
			}
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %d", len(b))
		}))
		t.Cleanup(up.Close)
		h := startGateway(t, withTransport(tr, proxyConfig(up.URL, "{ backend: memory }")))
		client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
		t.Cleanup(client.CloseIdleConnections)
		for _, tc := range []struct {
			path   string
			status int
			body   string
			sent   int64
		}{
			{"/api/v2/accept", 200, "got 4096", 4096},
			{"/api/v2/reject", 403, "no\n", 0},
		} {
			body := &countingReader{r: strings.NewReader(strings.Repeat("x", 4096))}
			req, _ := http.NewRequest("PUT", h.proxy+tc.path, io.NopCloser(body))
			req.ContentLength = 4096
			req.Header.Set("Expect", "100-continue")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(b) != tc.body {
				t.Fatalf("%s: got %d %q, want %d %q", tc.path, resp.StatusCode, b, tc.status, tc.body)
			}
			if n := body.n.Load(); n != tc.sent {
				t.Fatalf("%s: the client sent %d bytes of its body, want %d", tc.path, n, tc.sent)
			}
		}
	})
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
