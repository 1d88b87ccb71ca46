package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig bounds what one client can hold on the proxy listener.
type ServerConfig struct {
	// BodyIdleTimeout is the longest wait for the next bytes of a request
	// body; zero means 10s. A body that stalls longer is answered 408.
	BodyIdleTimeout time.Duration `koanf:"body_idle_timeout"`
	// BodyMinRate is the lowest average rate, in bytes per second, at which
	// a client may send a request body once it has had BodyIdleTimeout of
	// grace; only time spent waiting for the client counts. Zero means 256;
	// negative means no minimum. A slower body is answered 408.
	BodyMinRate int64 `koanf:"body_min_rate"`
	// MaxConnections caps the open connections on the proxy listener; more
	// are answered 503 and closed. Zero means 10,000; negative means no cap.
	MaxConnections int `koanf:"max_connections"`
}

func (s *ServerConfig) applyDefaults() {
	if s.BodyIdleTimeout == 0 {
		s.BodyIdleTimeout = 10 * time.Second
	}
	if s.BodyMinRate == 0 {
		s.BodyMinRate = 256
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = 10000
	}
}

func (s *ServerConfig) validate(bad func(path, format string, args ...any)) {
	if s.BodyIdleTimeout < 0 {
		bad("server.body_idle_timeout", "must be > 0, got %v", s.BodyIdleTimeout)
	}
}

// clientBody is a request body read under the listener's limits: each read
// must bring bytes within the idle timeout, and the body as a whole must
// keep the minimum rate over the time spent waiting on the client. It
// remembers why a read failed, so that the proxy can answer a client's fault
// (a malformed, cut short or stalled body) as one, not as an upstream
// failure.
type clientBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	minRate int64 // bytes per second; <= 0: none

	mu     sync.Mutex // held during a read of body
	waited time.Duration
	n      int64
	eof    bool
	err    error // the first read error other than io.EOF
}

type clientBodyKey struct{}

// Read reads from the client under a read deadline.
func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof {
		// Once the body hit EOF, the server reads the connection in the
		// background; a deadline now would cut that read short.
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	start := time.Now()
	deadline := start.Add(b.idle)
	if b.minRate > 0 {
		// The bytes read so far buy the grace period (the idle timeout)
		// plus n/minRate of waiting.
		budget := b.idle + time.Duration(float64(b.n)/float64(b.minRate)*float64(time.Second)) - b.waited
		deadline = start.Add(min(b.idle, budget))
	}
	_ = b.rc.SetReadDeadline(deadline)
	n, err := b.body.Read(p)
	b.waited += time.Since(start)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	return n, err
}

// Close does nothing: the server closes the request body itself once the
// handler returns. Passing Close through would let httputil.ReverseProxy
// before Go 1.26 (which closes the outbound request's body, the same
// reader) consume the body of an `Expect: 100-continue` request that the
// upstream refused, making the client send it after all.
func (b *clientBody) Close() error { return nil }

// clientFault returns the status and message for a request whose body the
// client failed to send (malformed or cut short: 400; too slow: 408), or 0
// when its body did not fail. With wait, it first waits for a read in
// progress to end: call it so only when the client's connection has failed
// (the request's context is done), when that read ends at once.
func clientFault(r *http.Request, wait bool) (int, string) {
	b, ok := r.Context().Value(clientBodyKey{}).(*clientBody)
	if !ok {
		return 0, ""
	}
	if wait {
		b.mu.Lock()
	} else if !b.mu.TryLock() {
		return 0, ""
	}
	err := b.err
	b.mu.Unlock()
	if err == nil {
		return 0, ""
	}
	return bodyErrorStatus(err)
}

// bodyErrorStatus classifies a failed read of a request body. It is apart
// from clientFault because its targets for errors.As live on the heap: in
// clientFault they cost two allocations on every request with a body.
func bodyErrorStatus(err error) (int, string) {
	var nerr net.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		return http.StatusRequestTimeout, "request body too slow"
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "request body too large"
	default:
		return http.StatusBadRequest, "malformed or truncated request body"
	}
}

// limitBodies puts request bodies under the listener's limits (see
// clientBody).
func (g *Gateway) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		sc := g.state.Load().cfg.Server
		b := &clientBody{body: r.Body, rc: http.NewResponseController(w), idle: sc.BodyIdleTimeout, minRate: sc.BodyMinRate}
		r = r.WithContext(context.WithValue(r.Context(), clientBodyKey{}, b))
		r.Body = b
		next.ServeHTTP(w, r)
		if b.mu.TryLock() {
			if !b.eof && b.err == nil {
				// The server reads what is left of the body (up to 256
				// KiB) before it answers: bound that wait too. A body
				// that failed is not waited for: its read fails at once.
				_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
			}
			b.mu.Unlock()
		}
	})
}

// connLimiter caps the open connections of a listener. Connections over the
// cap are answered 503 and closed at once, so a flood of idle or slow
// clients cannot hold an unbounded number of goroutines and upstream
// connections. It is safe for concurrent use.
type connLimiter struct {
	net.Listener
	max     func() int // the cap in force; <= 0: none
	open    atomic.Int64
	refused func()
}

var tooManyConnections = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 33\r\n\r\n{\"error\":\"too many connections\"}\n")

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		n := l.open.Add(1)
		if max := l.max(); max > 0 && n > int64(max) {
			l.open.Add(-1)
			// A fresh connection's send buffer is empty: this write does
			// not block, and the deadline makes sure.
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = c.Write(tooManyConnections)
			c.Close()
			if l.refused != nil {
				l.refused()
			}
			continue
		}
		return &limitedConn{Conn: c, l: l}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
