// Package upstream is the gateway's HTTP/1.1 client for proxied routes: a
// synchronous http.RoundTripper that writes the request and reads the
// response head on the caller's goroutine, over a bounded pool of idle
// connections per upstream, with no goroutine per connection or per request.
//
// net/http's Transport runs a read loop and a write loop per connection and
// hands every exchange between them and the caller; under proxy load those
// hand-offs cost about a third of the gateway's CPU. This package keeps
// net/http's wire format (Request.Write, ReadResponse) and its connection
// hygiene, and drops the hand-offs.
//
// What it does not do itself, TLS upstreams (https), it hands to a Fallback
// RoundTripper (the stock http.Transport).
package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults for the zero values of Transport's fields.
const (
	DefaultDialTimeout            = 5 * time.Second
	DefaultIdleTimeout            = 60 * time.Second
	DefaultMaxIdlePerHost         = 512
	DefaultMaxResponseHeaderBytes = 1 << 20
	DefaultExpectContinueTimeout  = time.Second
	defaultBufferSize             = 16 << 10

	// stallPoll is how long a blocked write of the request body waits
	// before looking for an early answer from the upstream.
	stallPoll = 100 * time.Millisecond
	// answerWait is how long a failed write waits for an answer the
	// upstream may have sent before it stopped reading.
	answerWait = 50 * time.Millisecond
	// max1xx bounds the informational responses before the final one.
	max1xx = 16
)

// Transport is a synchronous HTTP/1.1 RoundTripper for plain-HTTP upstreams.
//
// A round trip takes an idle connection to the request's host (checking
// that the upstream has not closed it) or dials a new one, writes the
// request with Request.Write (the head of a small body of known length in
// the same write as the body, unless the body is a millisecond late), and
// reads the response head with
// ReadResponse, skipping (and reporting through httptrace's Got1xxResponse)
// informational answers; a request with an Upgrade header that gets 101
// has the connection as its response body (an io.ReadWriteCloser, as
// ReverseProxy wants). The connection goes back to the pool when the
// response body has been read to its end, the request was written whole,
// neither side asked to close, and nothing unread follows the response.
// A request that fails on a reused connection before any byte of the answer
// arrived is retried once on a new connection when it is idempotent and has
// no body. Cancelling the request's context closes its connection (through
// context.AfterFunc: no goroutine waits on it).
//
// The zero value works, with the defaults of the fields' comments and the
// stock http.DefaultTransport as Fallback. A Transport is safe for
// concurrent use.
type Transport struct {
	// DialTimeout bounds connecting to the upstream; zero means 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response head after the
	// request has been written; zero means no bound.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout is how long an idle connection is kept; zero means 60s.
	IdleTimeout time.Duration
	// MaxIdlePerHost caps the idle connections kept per upstream; zero
	// means 512, negative keeps none.
	MaxIdlePerHost int
	// ExpectContinueTimeout is how long a request with "Expect:
	// 100-continue" waits for the upstream's 100 before sending its body
	// anyway; zero means 1s.
	ExpectContinueTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response head (each 1xx head too);
	// zero means 1 MiB.
	MaxResponseHeaderBytes int64
	// Fallback carries the requests this Transport does not handle: those
	// to https upstreams. Nil means http.DefaultTransport.
	Fallback http.RoundTripper
	// Dial opens connections; nil means a net.Dialer with DialTimeout and
	// 30s TCP keep-alives.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	now      func() time.Time // nil means time.Now; tests move it
	holdWait time.Duration    // zero means defaultHoldWait; tests lengthen it
	pools    sync.Map         // host:port -> *pool
	hosts    sync.Map         // URL.Host as requested -> *pool
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.RoundTripTrace(req, httptrace.ContextClientTrace(req.Context()))
}

// RoundTripTrace is RoundTrip reporting to trace (which may be nil)
// instead of the trace of req's context: a caller that has one at hand
// saves a context and a copy of the request.
func (t *Transport) RoundTripTrace(req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	if reason := handOff(req); reason != "" {
		fb := t.Fallback
		if fb == nil {
			fb = http.DefaultTransport
		}
		if trace != nil && trace != httptrace.ContextClientTrace(req.Context()) {
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		}
		return fb.RoundTrip(req)
	}
	if req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("upstream: request URL has no host")
	}
	p := t.poolFor(req.URL)
	ctx := req.Context()
	retryable := req.Body == nil || req.Body == http.NoBody
	retryable = retryable && isIdempotent(req)
	for attempt := 0; ; attempt++ {
		var c *conn
		if attempt == 0 {
			c = p.get(t.clock(), retryable) // a retry wants a new connection
		}
		reused := c != nil
		if c == nil {
			nc, err := t.dial(ctx, p.addr)
			if err != nil {
				closeBody(req)
				if ctx.Err() != nil {
					return nil, fmt.Errorf("dialing %s: %w", p.addr, ctx.Err())
				}
				return nil, fmt.Errorf("dialing %s: %w", p.addr, err)
			}
			c = newConn(nc, p)
		}
		resp, err := t.exchange(ctx, c, req, trace)
		if err == nil {
			return resp, nil
		}
		if attempt == 0 && reused && retryable && c.nread == 0 && ctx.Err() == nil && !isTimeout(err) {
			continue
		}
		return nil, err
	}
}

// handOff names why req goes to the Fallback, or returns "".
func handOff(req *http.Request) string {
	if !servesItself(req.URL) {
		return "scheme " + req.URL.Scheme
	}
	return ""
}

// servesItself reports whether requests to u are the Transport's own.
func servesItself(u *url.URL) bool { return u.Scheme == "http" }

// Serves reports whether the Transport serves requests to u itself, on the
// caller's goroutine, rather than handing them to the Fallback.
func (t *Transport) Serves(u *url.URL) bool { return servesItself(u) }

// exchange writes req on c and reads the response head. On error c is
// closed; on success the returned body owns c.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	stop := context.AfterFunc(ctx, c.closeFn)
	fail := func(step string, err error) (*http.Response, error) {
		stop()
		c.close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	out, wait := req, (*continueWait)(nil)
	if hasBody && httpguts.HeaderValuesContainsToken(req.Header["Expect"], "100-continue") {
		wait = &continueWait{t: t, c: c, req: req, trace: trace, rc: req.Body}
		withWait := *req
		withWait.Body = wait
		out = &withWait
	}
	c.watchStall = hasBody
	var w io.Writer = c.bw
	held := wait == nil && t.holdsHead(req)
	if held {
		w = heldHead{c}
		c.holdHead()
	}
	var werr error
	if ok, err := writeBodiless(c.bw, req, trace, &c.keys); ok {
		werr = err
	} else {
		werr = out.Write(w)
	}
	if held {
		c.releaseHead()
	}
	if werr == nil {
		werr = c.bw.Flush()
	}
	if hasBody {
		c.watchStall = false
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	var resp *http.Response
	switch {
	case wait != nil && wait.resp != nil:
		// A final answer instead of 100 Continue: the body was never
		// sent, and the connection cannot carry another request.
		resp, c.reusable = wait.resp, false
	case wait != nil && wait.err != nil:
		return fail("waiting for 100 Continue", wait.err)
	case werr != nil:
		// The upstream may have answered and stopped reading (a 413 to a
		// large upload): prefer its answer to the write error. Such a
		// connection is never reused.
		c.reusable = false
		if !c.answered(answerWait) {
			return fail("writing request", werr)
		}
	}
	if resp == nil {
		if d := t.ResponseHeaderTimeout; d > 0 {
			// It stays set past the head until a read needs the
			// connection again (see connReader.Read): a small answer
			// is read whole with its head, and its exchange sets
			// one deadline, not two.
			c.setReadDeadline(time.Now().Add(d), true)
		}
		var err error
		if resp, err = t.readHead(c, req, trace, false); err != nil {
			return fail("reading response", err)
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection now carries the upgraded protocol: it is the
		// body, for ReverseProxy to copy both ways, and never pooled.
		resp.Body = &upgraded{c: c, stop: stop}
		return resp, nil
	}
	if resp.Close || req.Close {
		c.reusable = false
	}
	b := &body{rc: resp.Body, c: c, stop: stop, t: t, ctx: ctx}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// maxHeldBody is the largest request body, of a length known in advance,
// whose head may wait for it to go out in the same write.
const maxHeldBody = 8 << 10

// defaultHoldWait is how long a held head waits for its body before it
// goes out alone: a small proxied body has usually come with its head, and
// is there at once; one the client has not sent yet does not keep the
// upstream from seeing the request.
const defaultHoldWait = time.Millisecond

// holdsHead reports whether req's head is held for its body: a body of at
// most maxHeldBody bytes whose length is known, and that NewRequest did not
// make replayable (GetBody): such a body is in memory, and Request.Write
// sends it with its head anyway. Larger, chunked and streamed bodies have
// their head sent at once, so that the upstream can answer before the body
// is whole.
func (t *Transport) holdsHead(req *http.Request) bool {
	return req.ContentLength > 0 && req.ContentLength <= maxHeldBody && len(req.TransferEncoding) == 0 && req.GetBody == nil
}

// heldHead writes to the connection's buffer under a type that
// Request.Write does not know: to a *bufio.Writer, it flushes the head of a
// request whose body is not an in-memory reader (a proxied one never is)
// before copying the body, a write of its own. Through heldHead the head
// stays in the buffer with the body, and exchange flushes both at once,
// unless the body is slower than the hold wait (see conn.holdHead). Its writes
// hold holdMu against that flush; it has no ReadFrom, so the body is read
// outside the buffer and the lock.
type heldHead struct{ c *conn }

func (h heldHead) Write(p []byte) (int, error) {
	h.c.holdMu.Lock()
	defer h.c.holdMu.Unlock()
	return h.c.bw.Write(p)
}

func (h heldHead) WriteString(s string) (int, error) {
	h.c.holdMu.Lock()
	defer h.c.holdMu.Unlock()
	return h.c.bw.WriteString(s)
}

func (h heldHead) WriteByte(b byte) error {
	h.c.holdMu.Lock()
	defer h.c.holdMu.Unlock()
	return h.c.bw.WriteByte(b)
}

// readHead reads the response head, passing informational answers to the
// trace; with at100 it also returns a 100 Continue.
func (t *Transport) readHead(c *conn, req *http.Request, trace *httptrace.ClientTrace, at100 bool) (*http.Response, error) {
	defer func() { c.limit = -1 }()
	upgrade := req.Header.Get("Upgrade") != ""
	for n1xx := 0; ; n1xx++ {
		c.limit = t.maxHeaderBytes()
		r, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.limit <= 0 {
				err = fmt.Errorf("response head exceeded %d bytes", t.maxHeaderBytes())
			}
			return nil, err
		}
		if r.StatusCode >= 200 || (r.StatusCode == http.StatusSwitchingProtocols && upgrade) {
			return r, nil
		}
		if r.StatusCode == http.StatusSwitchingProtocols || n1xx >= max1xx {
			return nil, fmt.Errorf("unexpected %s", r.Status)
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(r.StatusCode, textproto.MIMEHeader(r.Header)); err != nil {
				return nil, fmt.Errorf("forwarding %s: %w", r.Status, err)
			}
		}
		if at100 && r.StatusCode == http.StatusContinue {
			return r, nil
		}
	}
}

// upgraded is the body of a 101 answer: the connection itself, read through
// its buffer (which may already hold the upstream's first bytes).
type upgraded struct {
	c    *conn
	stop func() bool
}

func (u *upgraded) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *upgraded) Write(p []byte) (int, error) { return u.c.nc.Write(p) }
func (u *upgraded) Close() error {
	u.stop()
	u.c.close()
	return nil
}

// continueWait is the body of a request that expects 100 Continue. Its
// first Read, which comes after Request.Write has flushed the head, waits
// up to the ExpectContinueTimeout for the upstream's answer: on 100 or
// silence the body follows; on a final answer it is kept in resp and the
// body is never read.
type continueWait struct {
	t      *Transport
	c      *conn
	req    *http.Request
	trace  *httptrace.ClientTrace
	rc     io.ReadCloser
	waited bool
	resp   *http.Response // a final answer that came instead of 100
	err    error
}

var errFinalBeforeContinue = errors.New("upstream answered before 100 Continue")

func (w *continueWait) Read(p []byte) (int, error) {
	if !w.waited {
		w.waited = true
		if err := w.wait(); err != nil {
			return 0, err
		}
	}
	return w.rc.Read(p)
}

func (w *continueWait) Close() error { return w.rc.Close() }

func (w *continueWait) wait() error {
	c := w.c
	if err := c.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	before := c.nread
	c.setReadDeadline(time.Now().Add(w.t.expectContinueTimeout()), false)
	r, err := w.t.readHead(c, w.req, w.trace, true)
	c.setReadDeadline(time.Time{}, false)
	switch {
	case err == nil && r.StatusCode == http.StatusContinue:
		return nil
	case err == nil:
		w.resp = r
		return errFinalBeforeContinue
	case isTimeout(err) && c.nread == before:
		return nil // no word from the upstream: send the body anyway
	}
	w.err = err
	return err
}

// body is a response body that gives its connection back to the pool when
// read to the end, and closes it otherwise.
type body struct {
	rc   io.ReadCloser
	c    *conn
	stop func() bool
	t    *Transport
	ctx  context.Context
	done bool
	err  error
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		if b.err != nil {
			return 0, b.err
		}
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		if cerr := b.ctx.Err(); cerr != nil {
			err = fmt.Errorf("reading response body: %w", cerr)
		}
		b.err = err
		b.finish(false)
	}
	return n, err
}

func (b *body) Close() error {
	if !b.done {
		b.err = errors.New("upstream: read on closed response body")
		b.finish(false)
	}
	return nil
}

// finish releases the connection: to the pool when ok and reusable.
func (b *body) finish(ok bool) {
	b.done = true
	c := b.c
	if !b.stop() { // the context is done: abort has closed or is closing c
		ok = false
	}
	if ok && c.reusable && c.br.Buffered() == 0 {
		c.pool.put(c, b.t.clock())
		return
	}
	c.close()
}

// poolFor returns the pool of u's host, found by u.Host as written so that
// a request does not build its host:port again.
func (t *Transport) poolFor(u *url.URL) *pool {
	if p, ok := t.hosts.Load(u.Host); ok {
		return p.(*pool)
	}
	p := t.pool(canonicalAddr(u))
	t.hosts.Store(u.Host, p)
	return p
}

func (t *Transport) pool(addr string) *pool {
	if p, ok := t.pools.Load(addr); ok {
		return p.(*pool)
	}
	p, _ := t.pools.LoadOrStore(addr, &pool{t: t, addr: addr})
	return p.(*pool)
}

func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (t *Transport) maxIdle() int {
	switch {
	case t.MaxIdlePerHost > 0:
		return t.MaxIdlePerHost
	case t.MaxIdlePerHost < 0:
		return 0
	}
	return DefaultMaxIdlePerHost
}

func (t *Transport) expectContinueTimeout() time.Duration {
	if t.ExpectContinueTimeout > 0 {
		return t.ExpectContinueTimeout
	}
	return DefaultExpectContinueTimeout
}

func (t *Transport) maxHeaderBytes() int64 {
	if t.MaxResponseHeaderBytes > 0 {
		return t.MaxResponseHeaderBytes
	}
	return DefaultMaxResponseHeaderBytes
}

func (t *Transport) dial(ctx context.Context, addr string) (net.Conn, error) {
	if t.Dial != nil {
		return t.Dial(ctx, "tcp", addr)
	}
	d := net.Dialer{Timeout: t.DialTimeout, KeepAlive: 30 * time.Second}
	if d.Timeout <= 0 {
		d.Timeout = DefaultDialTimeout
	}
	return d.DialContext(ctx, "tcp", addr)
}

// CloseIdleConnections closes every idle connection. Connections in use
// are closed when their exchange ends, as usual.
func (t *Transport) CloseIdleConnections() {
	t.pools.Range(func(_, p any) bool {
		p.(*pool).closeIdle()
		return true
	})
}

// IdleConns returns the number of idle connections to addr (host:port).
func (t *Transport) IdleConns(addr string) int {
	p, ok := t.pools.Load(addr)
	if !ok {
		return 0
	}
	pp := p.(*pool)
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return len(pp.idle)
}

// pool holds the idle connections to one upstream, most recently used last.
type pool struct {
	t     *Transport
	addr  string // host:port
	mu    sync.Mutex
	idle  []*conn
	timer *time.Timer // reaps expired connections while any are idle
}

// get returns a live idle connection or nil. Connections past the idle
// timeout, and those the upstream has closed, are closed on the way.
//
// For a request that may be retried (idempotent, no body), a connection
// idle for less than trustIdle is not peeked at (a syscall): if the
// upstream closed it, the request fails before any byte of an answer and
// goes again on a new connection. Only a connection idle for longer could
// hold an answer nobody asked for (a 408 before an idle timeout's close),
// which a request must never take for its own.
func (p *pool) get(now time.Time, retryable bool) *conn {
	maxAge := p.t.idleTimeout()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(c.idleSince) >= maxAge {
			// Everything below c is older still.
			stale := append([]*conn(nil), p.idle...)
			clear(p.idle)
			p.idle = p.idle[:0]
			p.mu.Unlock()
			c.close()
			for _, s := range stale {
				s.close()
			}
			return nil
		}
		p.mu.Unlock()
		if c.alive(retryable && now.Sub(c.idleSince) < trustIdle) {
			c.nread = 0
			return c
		}
		c.close()
	}
}

// put returns c to the pool, or closes it when the pool is full.
func (p *pool) put(c *conn, now time.Time) {
	c.idleSince = now
	p.mu.Lock()
	if len(p.idle) >= p.t.maxIdle() {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.t.idleTimeout(), p.reap)
	}
	p.mu.Unlock()
}

// reap closes the connections idle for longer than the idle timeout and
// re-arms itself while any connection is idle.
func (p *pool) reap() {
	maxAge := p.t.idleTimeout()
	now := p.t.clock()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleSince) >= maxAge {
		i++
	}
	stale := append([]*conn(nil), p.idle[:i]...)
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if len(p.idle) > 0 {
		p.timer.Reset(maxAge - now.Sub(p.idle[0].idleSince))
	} else {
		p.timer = nil
	}
	p.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// conn is one upstream connection with its buffers.
type conn struct {
	nc       net.Conn
	raw      syscall.RawConn // for the liveness check; nil if unavailable
	pool     *pool
	br       *bufio.Reader
	bw       *bufio.Writer
	peek     [1]byte
	peekFn   func(fd uintptr) // c.peekFD, made once
	keys     []string         // writeBodiless sorts header keys here
	closeFn  func()           // c.close, made once: a method value allocates
	peekOK   bool
	closed   atomic.Bool
	reusable bool

	// A held head (see heldHead) and its flush when the body is slow.
	holdMu    sync.Mutex
	holdTimer *time.Timer
	holdDone  chan struct{}

	// headDeadline: the read deadline set for the response head may
	// still be in force, to be cleared before the next read that is
	// not of a head.
	headDeadline bool

	idleSince  time.Time
	nread      int64 // bytes read in the current exchange
	limit      int64 // bytes left for the response head; negative: no limit
	watchStall bool  // writes look for an early answer when they block
}

func newConn(nc net.Conn, p *pool) *conn {
	c := &conn{nc: nc, pool: p, reusable: true, limit: -1}
	c.closeFn = c.close
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
		c.peekFn = c.peekFD
	}
	c.br = bufio.NewReaderSize(connReader{c}, defaultBufferSize)
	c.bw = bufio.NewWriterSize(connWriter{c}, defaultBufferSize)
	return c
}

// close closes the connection. As the context.AfterFunc of an exchange it
// makes a blocked read or write return at once.
func (c *conn) close() {
	c.closed.Store(true)
	_ = c.nc.Close()
}

// alive reports whether an idle connection is still open with nothing
// unread on it; without peeking at the socket when trusted (see pool.get),
// only as far as this process knows.
func (c *conn) alive(trusted bool) bool {
	if c.closed.Load() || c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil || trusted {
		return true
	}
	return c.peekAlive()
}

// trustIdle is how long a connection may have been idle and still be used
// without a peek by a request that can be retried: far below any server's
// idle timeout.
const trustIdle = time.Second

// holdHead arms the flush of a held head: if the request is not written
// within the hold wait (its body is slow to come), what is buffered goes out.
// The timer is made once per connection.
func (c *conn) holdHead() {
	d := c.pool.t.holdWait
	if d <= 0 {
		d = defaultHoldWait
	}
	if c.holdTimer == nil {
		c.holdDone = make(chan struct{}, 1)
		c.holdTimer = time.AfterFunc(d, c.flushHeld)
		return
	}
	c.holdTimer.Reset(d)
}

// releaseHead disarms the flush of holdHead, or waits for it to end.
func (c *conn) releaseHead() {
	if !c.holdTimer.Stop() {
		<-c.holdDone
	}
}

func (c *conn) flushHeld() {
	c.holdMu.Lock()
	_ = c.bw.Flush() // an error stays in bw for the request's next write
	c.holdMu.Unlock()
	c.holdDone <- struct{}{}
}

// setReadDeadline sets the connection's read deadline; head says that it
// bounds a response head, and may be left in force after it.
func (c *conn) setReadDeadline(t time.Time, head bool) {
	c.headDeadline = head
	_ = c.nc.SetReadDeadline(t)
}

// answered reports whether the upstream has sent something to read,
// waiting at most d for it.
func (c *conn) answered(d time.Duration) bool {
	if c.br.Buffered() > 0 {
		return true
	}
	c.setReadDeadline(time.Now().Add(d), false)
	_, err := c.br.Peek(1)
	c.setReadDeadline(time.Time{}, false)
	return err == nil
}

type connReader struct{ c *conn }

func (r connReader) Read(p []byte) (int, error) {
	c := r.c
	if c.limit < 0 && c.headDeadline {
		// Past the head (a body, an upgraded stream): its reads
		// have no deadline of the Transport's.
		c.setReadDeadline(time.Time{}, false)
	}
	if c.limit >= 0 {
		if c.limit == 0 {
			return 0, errors.New("response head too large")
		}
		if int64(len(p)) > c.limit {
			p = p[:c.limit]
		}
	}
	n, err := c.nc.Read(p)
	c.nread += int64(n)
	if c.limit >= 0 {
		c.limit -= int64(n)
	}
	return n, err
}

type connWriter struct{ c *conn }

// Write writes p whole. While a request body is being written, a write that
// blocks for stallPoll looks for an answer from the upstream: one that
// answered early (and may never read the rest) ends the write with
// errAnswered; otherwise the write goes on.
func (w connWriter) Write(p []byte) (int, error) {
	c := w.c
	if !c.watchStall {
		return c.nc.Write(p)
	}
	written := 0
	for {
		_ = c.nc.SetWriteDeadline(time.Now().Add(stallPoll))
		n, err := c.nc.Write(p[written:])
		written += n
		if err == nil || !isTimeout(err) {
			return written, err
		}
		if c.answered(time.Millisecond) {
			return written, errAnswered
		}
	}
}

var errAnswered = errors.New("upstream answered before reading the whole request")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
