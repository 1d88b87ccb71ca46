package upstream

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is a TCP upstream whose connections are served by serve, one
// goroutine each; it counts the connections it accepted.
type rawUpstream struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newRawUpstream(t *testing.T, serve func(n int64, c net.Conn, br *bufio.Reader)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := u.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			u.wg.Go(func() {
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		u.wg.Wait()
	})
	return u
}

func (u *rawUpstream) url(path string) string { return "http://" + u.ln.Addr().String() + path }

// countingServer is an httptest server that counts new connections.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

// recorder is a Fallback that counts what it carries.
type recorder struct {
	n  atomic.Int64
	rt http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n.Add(1)
	return r.rt.RoundTrip(req)
}

func newTransport(t *testing.T) (*Transport, *recorder) {
	t.Helper()
	std := &http.Transport{}
	fb := &recorder{rt: std}
	tr := &Transport{Fallback: fb, ResponseHeaderTimeout: 5 * time.Second}
	t.Cleanup(func() { tr.CloseIdleConnections(); std.CloseIdleConnections() })
	return tr, fb
}

// waitFor yields until cond holds, failing the test after 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		runtime.Gosched()
	}
}

func mustDo(t *testing.T, tr http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func addrOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// zeros is an endless reader of zero bytes; wrap it in a LimitReader.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestRequestBodiesStream(t *testing.T) {
	t.Parallel()
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d %x %v", n, h.Sum(nil), r.TransferEncoding)
	})
	tr, fb := newTransport(t)
	const size = 64 << 20
	want := sha256.New()
	_, _ = io.Copy(want, io.LimitReader(zeros{}, size))
	sum := fmt.Sprintf("%x", want.Sum(nil))
	for i, tc := range []struct {
		name   string
		length int64
		te     string
	}{
		{"fixed length", size, "[]"},
		{"chunked", -1, "[chunked]"},
	} {
		req := newReq(t, "POST", srv.URL, io.NopCloser(io.LimitReader(zeros{}, size)))
		req.ContentLength = tc.length
		_, body := mustDo(t, tr, req)
		if got := fmt.Sprintf("%d %s %s", size, sum, tc.te); body != got {
			t.Fatalf("%s: upstream read %q, want %q", tc.name, body, got)
		}
		if n := conns.Load(); n != 1 {
			t.Fatalf("%s (request %d): %d connections, want 1 reused", tc.name, i+1, n)
		}
	}
	if n := tr.IdleConns(addrOf(srv)); n != 1 {
		t.Fatalf("%d idle connections, want 1", n)
	}
	if n := fb.n.Load(); n != 0 {
		t.Fatalf("%d requests handed off, want 0", n)
	}
}

func TestHandOffs(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "tls") }))
	t.Cleanup(tls.Close)
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want int64
	}{
		{"plain GET stays", func() *http.Request { return newReq(t, "GET", srv.URL, nil) }, 0},
		{"Expect: 100-continue stays", func() *http.Request {
			r := newReq(t, "PUT", srv.URL, strings.NewReader("body"))
			r.Header.Set("Expect", "100-continue")
			return r
		}, 0},
		{"upgrade stays", func() *http.Request {
			r := newReq(t, "GET", srv.URL, nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}, 0},
		{"https", func() *http.Request { return newReq(t, "GET", tls.URL, nil) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			std := tls.Client().Transport.(*http.Transport).Clone()
			fb := &recorder{rt: std}
			tr := &Transport{Fallback: fb}
			defer tr.CloseIdleConnections()
			defer std.CloseIdleConnections()
			resp, err := tr.RoundTrip(tc.req())
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := fb.n.Load(); got != tc.want {
				t.Fatalf("handed off %d requests, want %d", got, tc.want)
			}
		})
	}
}

// TestUpgrade: a 101 answer to an upgrade request makes the connection the
// response body, both ways, including bytes the upstream sent right after
// the head; a 101 to a request that asked for none is an error.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "echo "+line)
		}
	})
	tr, fb := newTransport(t)
	req := newReq(t, "GET", up.url("/ws"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != 101 || !ok {
		t.Fatalf("got %d with a %T body, want 101 and an io.ReadWriteCloser", resp.StatusCode, resp.Body)
	}
	rd := bufio.NewReader(rwc)
	if line, err := rd.ReadString('\n'); line != "hello\n" {
		t.Fatalf("first line %q %v, want hello", line, err)
	}
	_, _ = io.WriteString(rwc, "ping\n")
	if line, err := rd.ReadString('\n'); line != "echo ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
	rwc.Close()
	if n := tr.IdleConns(up.ln.Addr().String()); n != 0 || fb.n.Load() != 0 {
		t.Fatalf("%d idle connections, %d handed off; want 0 and 0", n, fb.n.Load())
	}
	_, err = tr.RoundTrip(newReq(t, "GET", up.url("/no-upgrade"), nil))
	if err == nil || !strings.Contains(err.Error(), "101") {
		t.Fatalf("a 101 nobody asked for: %v, want an error", err)
	}
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

// TestExpectContinue: the body waits for the upstream's 100 Continue, is
// never sent when a final answer comes first, and is sent after the
// timeout to an upstream that says nothing.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reject" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body) // net/http sends 100 Continue here
		fmt.Fprintf(w, "got %d", len(b))
	})
	silent := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	for _, tc := range []struct {
		name, url string
		status    int
		body      string
		sent      int64 // bytes of the request body read
		got100    int
	}{
		{"upstream says continue", srv.URL + "/accept", 200, "got 4096", 4096, 1},
		{"upstream answers first", srv.URL + "/reject", 403, "no\n", 0, 0},
		{"upstream says nothing", silent.url("/"), 200, strings.Repeat("x", 4096), 4096, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Transport{ExpectContinueTimeout: 100 * time.Millisecond}
			defer tr.CloseIdleConnections()
			var got100 int
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
					if code == 100 {
						got100++
					}
					return nil
				},
			})
			body := &countingReader{r: strings.NewReader(strings.Repeat("x", 4096))}
			req := newReq(t, "PUT", tc.url, io.NopCloser(body)).WithContext(ctx)
			req.ContentLength = 4096
			req.Header.Set("Expect", "100-continue")
			resp, got := mustDo(t, tr, req)
			if resp.StatusCode != tc.status || got != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, got, tc.status, tc.body)
			}
			if n := body.n.Load(); n != tc.sent {
				t.Fatalf("%d bytes of the body read, want %d", n, tc.sent)
			}
			if got100 != tc.got100 {
				t.Fatalf("saw %d 100 Continue, want %d", got100, tc.got100)
			}
		})
	}
}

func TestEarlyAnswer(t *testing.T) {
	t.Parallel()
	t.Run("net/http upstream that stops reading", func(t *testing.T) {
		t.Parallel()
		srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		})
		tr, _ := newTransport(t)
		req := newReq(t, "POST", srv.URL, io.NopCloser(io.LimitReader(zeros{}, 1<<30)))
		req.ContentLength = 1 << 30
		resp, body := mustDo(t, tr, req)
		if resp.StatusCode != 413 || body != "too large\n" {
			t.Fatalf("got %d %q, want 413 too large", resp.StatusCode, body)
		}
		if n := tr.IdleConns(addrOf(srv)); n != 0 {
			t.Fatalf("%d idle connections after a half-written request, want 0", n)
		}
	})
	t.Run("upstream that answers and never reads nor closes", func(t *testing.T) {
		t.Parallel()
		up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
			_, _ = io.Copy(io.Discard, strings.NewReader("")) // and never read again
			buf := make([]byte, 1)
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				if _, err := c.Read(buf[:0]); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		tr, _ := newTransport(t)
		req := newReq(t, "POST", up.url("/"), io.NopCloser(io.LimitReader(zeros{}, 1<<30)))
		req.ContentLength = 1 << 30
		resp, body := mustDo(t, tr, req)
		if resp.StatusCode != 403 || body != "no" {
			t.Fatalf("got %d %q, want 403 no", resp.StatusCode, body)
		}
		if n := tr.IdleConns(up.ln.Addr().String()); n != 0 {
			t.Fatalf("%d idle connections, want 0", n)
		}
	})
}

func TestResponseFraming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		method   string
		answer   string // raw response to each request
		body     string
		reused   bool // the second request goes over the first connection
		trailers string
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", true, ""},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\nX-Sum: 42\r\n\r\n", "hello", true, "42"},
		{"no length: until close", "GET", "HTTP/1.1 200 OK\r\n\r\nhello", "hello", false, ""},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", "hello", false, ""},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", false, ""},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", "hello", true, ""},
		{"HEAD with a length and no body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "", true, ""},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", "", true, ""},
		{"1xx before the answer", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", true, ""},
		{"junk after the body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk", "hello", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, tc.answer)
					if tc.name == "no length: until close" {
						return // the close ends the body
					}
					// Otherwise keep the connection open: the transport
					// must see for itself whether it may reuse it.
				}
			})
			tr, _ := newTransport(t)
			var got1xx []string
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					got1xx = append(got1xx, strconv.Itoa(code)+" "+h.Get("Link"))
					return nil
				},
			})
			for i := range 2 {
				req := newReq(t, tc.method, up.url("/"), nil).WithContext(ctx)
				resp, body := mustDo(t, tr, req)
				if body != tc.body {
					t.Fatalf("request %d: body %q, want %q", i+1, body, tc.body)
				}
				if got := resp.Trailer.Get("X-Sum"); got != tc.trailers {
					t.Fatalf("trailer X-Sum %q, want %q", got, tc.trailers)
				}
			}
			want := int64(2)
			if tc.reused {
				want = 1
			}
			if n := up.conns.Load(); n != want {
				t.Fatalf("%d connections for 2 requests, want %d", n, want)
			}
			if strings.HasPrefix(tc.answer, "HTTP/1.1 103") && (len(got1xx) != 2 || got1xx[0] != "103 </a.css>") {
				t.Fatalf("1xx seen %q, want two 103 with the Link", got1xx)
			}
		})
	}
}

func TestHeaderTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		<-release
	})
	t.Cleanup(func() { close(release) }) // before the upstream's cleanup
	tr := &Transport{ResponseHeaderTimeout: 50 * time.Millisecond}
	_, err := tr.RoundTrip(newReq(t, "GET", up.url("/"), nil))
	if !isTimeout(err) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if n := up.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1: a timed-out GET is not retried", n)
	}
}

func TestIdleTimeoutAndCap(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	var holding atomic.Bool
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if holding.Load() {
			<-hold
		}
		_, _ = io.WriteString(w, "ok")
	})
	now := time.Unix(1e9, 0)
	var mu sync.Mutex
	tr := &Transport{IdleTimeout: time.Minute, MaxIdlePerHost: 2, now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	t.Cleanup(tr.CloseIdleConnections)
	addr := addrOf(srv)

	// Five at once: five connections, of which two stay idle.
	holding.Store(true)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { mustDo(t, tr, newReq(t, "GET", srv.URL, nil)) })
	}
	waitFor(t, func() bool { return conns.Load() == 5 })
	close(hold)
	wg.Wait()
	if n := tr.IdleConns(addr); n != 2 {
		t.Fatalf("%d idle connections, want the cap of 2", n)
	}
	holding.Store(false)
	mustDo(t, tr, newReq(t, "GET", srv.URL, nil))
	if n := conns.Load(); n != 5 {
		t.Fatalf("%d connections, want 5: an idle one should be reused", n)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	mustDo(t, tr, newReq(t, "GET", srv.URL, nil))
	if n := conns.Load(); n != 6 {
		t.Fatalf("%d connections, want 6: idle ones past the timeout must not be used", n)
	}
	if n := tr.IdleConns(addr); n != 1 {
		t.Fatalf("%d idle connections, want 1 (the expired ones closed)", n)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	tr.pool(addr).reap()
	if n := tr.IdleConns(addr); n != 0 {
		t.Fatalf("%d idle connections after reaping, want 0", n)
	}
}

func TestReuseOnlyAfterTheWholeBody(t *testing.T) {
	t.Parallel()
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 100<<10))
	})
	tr, _ := newTransport(t)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadFull(resp.Body, make([]byte, 10))
	resp.Body.Close()
	if n := tr.IdleConns(addrOf(srv)); n != 0 {
		t.Fatalf("%d idle connections after closing a half-read body, want 0", n)
	}
	_, body := mustDo(t, tr, newReq(t, "GET", srv.URL, nil))
	if len(body) != 100<<10 {
		t.Fatalf("body of %d bytes", len(body))
	}
	if n := tr.IdleConns(addrOf(srv)); n != 1 {
		t.Fatalf("%d idle connections after reading to the end, want 1", n)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestUpstreamClosesIdle: an upstream that closes each connection after
// answering without saying so. A POST, which is never retried, must not be
// sent over the closed connection.
func TestUpstreamClosesIdle(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 10)
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.FormatInt(n, 10)+"\r\n\r\n"+strings.Repeat("x", int(n)))
		c.Close()
		closed <- struct{}{}
	})
	tr, _ := newTransport(t)
	for i := range 3 {
		_, body := mustDo(t, tr, newReq(t, "POST", up.url("/"), strings.NewReader("payload")))
		if len(body) != i+1 {
			t.Fatalf("request %d answered by connection %d", i+1, len(body))
		}
		<-closed
	}
}

// TestRetry: a request that fails on a reused connection before any byte
// of the answer is retried once on a new connection when idempotent and
// bodiless, and not otherwise.
func TestRetry(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			requests.Add(1)
			_, _ = io.Copy(io.Discard, req.Body)
			if i == 1 { // the second request on any connection: hang up
				return
			}
			answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			if req.Method == "HEAD" {
				answer = strings.TrimSuffix(answer, "ok")
			}
			_, _ = io.WriteString(c, answer)
		}
	})
	for _, tc := range []struct {
		method, body string
		ok           bool
		requests     int64
	}{
		{"GET", "", true, 3},
		{"HEAD", "", true, 3},
		{"DELETE", "", false, 2},
		{"POST", "x", false, 2},
	} {
		t.Run(tc.method, func(t *testing.T) {
			requests.Store(0)
			tr, _ := newTransport(t)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			mustDo(t, tr, newReq(t, tc.method, up.url("/"), body))
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, err := tr.RoundTrip(newReq(t, tc.method, up.url("/"), body))
			if tc.ok && (err != nil || resp.StatusCode != 200) {
				t.Fatalf("retry failed: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("%s was retried", tc.method)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if n := requests.Load(); n != tc.requests {
				t.Fatalf("upstream saw %d requests, want %d", n, tc.requests)
			}
		})
	}
}

func TestResetMidBody(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if n == 1 {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
			_ = c.(*net.TCPConn).SetLinger(0) // RST
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole")
	})
	tr, _ := newTransport(t)
	resp, err := tr.RoundTrip(newReq(t, "GET", up.url("/"), nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("read %q without an error from a reset connection", b)
	}
	if n := tr.IdleConns(up.ln.Addr().String()); n != 0 {
		t.Fatalf("%d idle connections after a reset, want 0", n)
	}
	if _, body := mustDo(t, tr, newReq(t, "GET", up.url("/"), nil)); body != "whole" {
		t.Fatalf("next request got %q", body)
	}
}

func TestCancellation(t *testing.T) {
	t.Parallel()
	gone := make(chan string, 2)
	received := make(chan struct{}, 2)
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		received <- struct{}{}
		if req.URL.Path == "/body" {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
		}
		_, err = br.ReadByte() // wait for the transport to hang up
		gone <- req.URL.Path + " " + fmt.Sprint(err == io.EOF)
	})
	tr, _ := newTransport(t)
	t.Run("waiting for the head", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-received; cancel() }() // once the request is on the upstream
		_, err := tr.RoundTrip(newReq(t, "GET", up.url("/head"), nil).WithContext(ctx))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if got := <-gone; got != "/head true" {
			t.Fatalf("upstream: %q, want its connection closed", got)
		}
	})
	t.Run("reading the body", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		resp, err := tr.RoundTrip(newReq(t, "GET", up.url("/body"), nil).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		if got := <-gone; got != "/body true" {
			t.Fatalf("upstream: %q, want its connection closed", got)
		}
	})
}

// TestNoGoroutinePerConnection: 40 exchanges in flight add the 40 callers
// and the upstream's 80 (a handler and a background reader per
// connection), and nothing of the transport's; net/http's Transport adds
// two per connection, which the test checks it would see.
func TestNoGoroutinePerConnection(t *testing.T) {
	var release atomic.Pointer[chan struct{}]
	var arrived atomic.Int64
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		ch := *release.Load()
		arrived.Add(1)
		<-ch
	})
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
		max  int
	}{
		{"fast", &Transport{}, 3*40 + 5},
		{"standard", &http.Transport{MaxIdleConnsPerHost: 100}, 5*40 + 5},
	} {
		arrived.Store(0)
		ch := make(chan struct{})
		release.Store(&ch)
		before := runtime.NumGoroutine()
		var wg sync.WaitGroup
		for range 40 {
			wg.Go(func() {
				resp, err := tc.rt.RoundTrip(newReq(t, "GET", srv.URL, nil))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		waitFor(t, func() bool { return arrived.Load() == 40 })
		during := runtime.NumGoroutine() - before
		close(ch)
		wg.Wait()
		t.Logf("%s: %d goroutines more with 40 in flight", tc.name, during)
		if during > tc.max || during < tc.max-10 {
			t.Fatalf("%s: %d goroutines more with 40 exchanges in flight, want %d-%d", tc.name, during, tc.max-10, tc.max)
		}
	}
}

// BenchmarkRoundTrip: one small GET per op through each transport to a
// loopback upstream, in parallel, with allocations.
//
//	go test ./gateway/internal/upstream -run '^$' -bench RoundTrip -benchmem
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the upstream\n")
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"fast", &Transport{}},
		{"standard", &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
					resp, err := tc.rt.RoundTrip(req)
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

// TestRoundTripTraceReports1xx: the trace given to RoundTripTrace, not
// the context's, hears the 103 of an upstream, whether the Transport serves
// it or hands it to the Fallback (https).
func TestRoundTripTraceReports1xx(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "final")
	})
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	tls := httptest.NewTLSServer(h)
	t.Cleanup(tls.Close)
	std := tls.Client().Transport.(*http.Transport)
	fb := &recorder{rt: std}
	tr := &Transport{Fallback: fb}
	t.Cleanup(tr.CloseIdleConnections)
	for _, tc := range []struct {
		name, url string
		fallback  int64
	}{{"served", plain.URL, 0}, {"handed off", tls.URL, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
				return nil
			}}
			before := fb.n.Load()
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			resp, err := tr.RoundTripTrace(req, trace)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "final" || len(got) != 1 || got[0] != "103 </a.css>; rel=preload" {
				t.Fatalf("body %q, 1xx %q; want final and one 103 with its Link", b, got)
			}
			if n := fb.n.Load() - before; n != tc.fallback {
				t.Fatalf("%d requests handed off, want %d", n, tc.fallback)
			}
		})
	}
}
