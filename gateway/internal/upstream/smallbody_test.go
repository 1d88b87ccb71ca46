package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeCounter is a net.Conn that counts its writes and the writes that
// ended in a timeout (the body-stall poll firing).
type writeCounter struct {
	net.Conn
	writes, timeouts *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	n, err := c.Conn.Write(p)
	if err != nil && isTimeout(err) {
		c.timeouts.Add(1)
	}
	return n, err
}

// TestSmallPostTakesTheShortPath guards the latency of small request
// bodies: a 1 KB POST on a pooled connection goes out in one write (head
// and body together, no flush between them), never reaches the stall poll
// that looks for an early answer, waits for no 100 Continue, and reuses the
// one connection, so nothing in it can wait for stallPoll, the
// ExpectContinueTimeout or a new dial. Counts, not clocks: each of those
// waits shows as an extra write, a timed-out write or a new connection.
func TestSmallPostTakesTheShortPath(t *testing.T) {
	t.Parallel()
	var got atomic.Int64
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Add(n)
		_, _ = io.WriteString(w, "ok")
	})
	var writes, timeouts atomic.Int64
	tr, _ := newTransport(t)
	tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{c, &writes, &timeouts}, nil
	}
	payload := bytes.Repeat([]byte("x"), 1024)
	const n = 200
	for i := range n {
		req := newReq(t, "POST", srv.URL+"/upload", bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, body := mustDo(t, tr, req)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: got %d %q, want 200 ok", i, resp.StatusCode, body)
		}
	}
	if g := got.Load(); g != n*1024 {
		t.Fatalf("upstream read %d body bytes, want %d", g, n*1024)
	}
	if c := conns.Load(); c != 1 {
		t.Fatalf("%d connections for %d sequential POSTs, want 1", c, n)
	}
	if w := writes.Load(); w != n {
		t.Fatalf("%d writes for %d small POSTs, want %d (one per request)", w, n, n)
	}
	if to := timeouts.Load(); to != 0 {
		t.Fatalf("%d writes hit the stall poll, want 0", to)
	}
}

// BenchmarkRoundTripPOST: one 1 KB POST per op through each transport to a
// loopback upstream that reads the body, in parallel, reporting the p50,
// p99 and largest op latency beside ns/op: the tail of the small-body path.
// Run it on a quiet machine; a loaded one puts its scheduling in the tail.
//
//	go test ./gateway/internal/upstream -run '^$' -bench RoundTripPOST -benchmem -cpu 2,8
func BenchmarkRoundTripPOST(b *testing.B) {
	reply := []byte("hello from the upstream\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
		_, _ = w.Write(reply)
	}))
	defer srv.Close()
	payload := bytes.Repeat([]byte("x"), 1024)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"fast", &Transport{}},
		{"standard", &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var mu sync.Mutex
			var lat []time.Duration
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					req, _ := http.NewRequest("POST", srv.URL+"/x", bytes.NewReader(payload))
					resp, err := tc.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
			b.ReportMetric(at(0.5), "p50-µs")
			b.ReportMetric(at(0.99), "p99-µs")
			b.ReportMetric(at(1), "max-µs")
		})
	}
}

// opaqueBody is a request body that net/http does not know to be in
// memory, as a proxied request's body never is.
type opaqueBody struct{ r io.Reader }

func (b opaqueBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b opaqueBody) Close() error               { return nil }

// TestHeldHeadWrites counts the writes of requests whose body is an opaque
// reader, as a proxied one is: a small body of known length goes out with
// its head in one write (Request.Write alone would flush the head first);
// a larger or chunked body has its head sent at once, ahead of the body
// (and a chunked one each chunk as it comes).
func TestHeldHeadWrites(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
	})
	for _, tc := range []struct {
		name   string
		size   int64
		length int64 // the request's ContentLength; -1: chunked
		writes int64
	}{
		{"1KB", 1024, 1024, 1},
		{"largest held", maxHeldBody, maxHeldBody, 1},
		{"one byte more", maxHeldBody + 1, maxHeldBody + 1, 2},
		{"chunked", 1024, -1, 3}, // the head, the chunk, the last chunk
	} {
		t.Run(tc.name, func(t *testing.T) {
			var writes, timeouts atomic.Int64
			tr, _ := newTransport(t)
			tr.holdWait = time.Hour // the body is there: a loaded machine must not let the head go alone
			tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return writeCounter{c, &writes, &timeouts}, nil
			}
			req := newReq(t, "POST", srv.URL+"/upload", nil)
			req.Body = opaqueBody{bytes.NewReader(bytes.Repeat([]byte("x"), int(tc.size)))}
			req.ContentLength = tc.length
			resp, body := mustDo(t, tr, req)
			if resp.StatusCode != 200 || body != strconv.FormatInt(tc.size, 10) {
				t.Fatalf("got %d %q, want 200 %d", resp.StatusCode, body, tc.size)
			}
			if w := writes.Load(); w != tc.writes {
				t.Fatalf("%d writes, want %d", w, tc.writes)
			}
		})
	}
}

// TestHeldHeadGoesAloneForASlowBody: a small body that has not come yet
// does not keep its head from the upstream: after holdWait the head goes
// out alone, and the body follows when it comes.
func TestHeldHeadGoesAloneForASlowBody(t *testing.T) {
	t.Parallel()
	sawHead := make(chan struct{})
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		close(sawHead)
		b, _ := io.ReadAll(req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(b))+"\r\n\r\n"+string(b))
	})
	pr, pw := io.Pipe()
	var late atomic.Bool
	go func() {
		select {
		case <-sawHead:
		case <-time.After(10 * time.Second):
			late.Store(true) // the head waited for the body: send it
		}
		_, _ = pw.Write([]byte("0123456789"))
		pw.Close()
	}()
	tr, _ := newTransport(t)
	req := newReq(t, "POST", up.url("/"), nil)
	req.Body, req.ContentLength = pr, 10
	resp, body := mustDo(t, tr, req)
	if late.Load() {
		t.Fatal("the upstream saw no head until the body came")
	}
	if resp.StatusCode != 200 || body != "0123456789" {
		t.Fatalf("got %d %q, want 200 0123456789", resp.StatusCode, body)
	}
}
