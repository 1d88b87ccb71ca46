package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadlineLog is a net.Conn that records its reads and read deadlines, in
// order: 'R' a read, 'D' a deadline set, 'Z' a deadline cleared.
type deadlineLog struct {
	net.Conn
	mu  *sync.Mutex
	log *[]byte
}

func (c deadlineLog) add(b byte) {
	c.mu.Lock()
	*c.log = append(*c.log, b)
	c.mu.Unlock()
}

func (c deadlineLog) Read(p []byte) (int, error) {
	c.add('R')
	return c.Conn.Read(p)
}

func (c deadlineLog) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.add('Z')
	} else {
		c.add('D')
	}
	return c.Conn.SetReadDeadline(t)
}

// TestOneDeadlinePerSmallExchange: the response-header deadline is set
// once per exchange, and cleared only when a read past the head needs the
// connection: never for an answer that came whole with its head, and
// before the first read of a body that did not.
func TestOneDeadlinePerSmallExchange(t *testing.T) {
	t.Parallel()
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = io.WriteString(w, strings.Repeat("x", n))
	})
	var mu sync.Mutex
	var log []byte
	tr, _ := newTransport(t)
	tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return deadlineLog{c, &mu, &log}, nil
	}
	for i, tc := range []struct {
		n    int
		want string // the reads and deadlines of the exchange
	}{
		{24, "^DR+$"},
		{24, "^DR+$"},
		{0, "^DR+$"},
		{48 << 10, "^DR+ZR+$"}, // the head and 16 KiB, then the rest
		{24, "^DR+$"},
	} {
		mu.Lock()
		log = log[:0]
		mu.Unlock()
		_, body := mustDo(t, tr, newReq(t, "GET", srv.URL+"/?n="+strconv.Itoa(tc.n), nil))
		if len(body) != tc.n {
			t.Fatalf("exchange %d: got %d bytes, want %d", i, len(body), tc.n)
		}
		mu.Lock()
		got := string(log)
		mu.Unlock()
		if !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("exchange %d (%d bytes): reads and deadlines %q, want %q", i, tc.n, got, tc.want)
		}
	}
	if c := conns.Load(); c != 1 {
		t.Fatalf("%d connections, want 1", c)
	}
}

// TestLeftoverDeadlineKeepsConnection: an idle connection whose
// response-header deadline has passed is still open and reused: the
// liveness check does not go through the deadline.
func TestLeftoverDeadlineKeepsConnection(t *testing.T) {
	t.Parallel()
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	tr, _ := newTransport(t)
	for i := range 3 {
		if _, body := mustDo(t, tr, newReq(t, "GET", srv.URL+"/", nil)); body != "ok" {
			t.Fatalf("request %d: got %q, want ok", i, body)
		}
		p := tr.pool(addrOf(srv))
		p.mu.Lock()
		if len(p.idle) != 1 {
			p.mu.Unlock()
			t.Fatalf("request %d: %d idle connections, want 1", i, len(p.idle))
		}
		c := p.idle[0]
		p.mu.Unlock()
		c.setReadDeadline(time.Now().Add(-time.Second), true) // as if the head's deadline ran out while idle
	}
	if c := conns.Load(); c != 1 {
		t.Fatalf("%d connections for 3 requests, want 1", c)
	}
}
