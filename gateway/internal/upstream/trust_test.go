package upstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRecentlyIdleConnectionClosedByTheUpstream: a GET on a connection the
// upstream closed after its last answer (no peek for a request that may be
// retried, idle for less than trustIdle) is answered all the same, on a new
// connection.
func TestRecentlyIdleConnectionClosedByTheUpstream(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.FormatInt(n, 10)+"\r\n\r\n"+strings.Repeat("x", int(n)))
		c.Close() // without announcing it
	})
	tr, _ := newTransport(t)
	for i := range 5 {
		resp, _ := mustDo(t, tr, newReq(t, "GET", up.url("/"), nil))
		if resp.ContentLength != int64(i+1) {
			t.Fatalf("GET %d answered by connection %d", i+1, resp.ContentLength)
		}
	}
}

// TestUnsolicitedAnswerAfterLongIdle: an upstream that answers 408 to a
// connection idle for longer than trustIdle, then closes it, never has that
// answer taken for the next request's: a connection idle that long is
// peeked at first, even for a request that could be retried.
func TestUnsolicitedAnswerAfterLongIdle(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	idleNow := make(chan struct{})
	timedOut := make(chan struct{})
	up := newRawUpstream(t, func(n int64, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if n == 1 {
			<-idleNow
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			c.Close()
			close(timedOut)
		}
	})
	tr, _ := newTransport(t)
	tr.now = clock
	mustDo(t, tr, newReq(t, "GET", up.url("/"), nil))
	close(idleNow)
	<-timedOut
	waitUnsolicited(t, tr, up.url("/"))
	mu.Lock()
	now = now.Add(2 * trustIdle)
	mu.Unlock()
	resp, body := mustDo(t, tr, newReq(t, "GET", up.url("/"), nil))
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("GET after a long idle: %d %q, want the upstream's 200 on a new connection", resp.StatusCode, body)
	}
}

// waitUnsolicited waits until the idle connection to url has something to
// read (the upstream's 408 has crossed loopback), as its peek sees it.
func waitUnsolicited(t *testing.T, tr *Transport, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p := tr.poolFor(u)
	for range 5000 {
		p.mu.Lock()
		arrived := len(p.idle) == 1 && !p.idle[0].peekAlive()
		p.mu.Unlock()
		if arrived {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the upstream's 408 never reached the idle connection")
}
