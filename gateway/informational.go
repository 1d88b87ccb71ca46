package gateway

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"

	"github.com/gin-gonic/gin"
)

// informational is the writer the proxy answers through. It passes an
// upstream's informational answers (102 Processing, 103 Early Hints, ...)
// on to the client, which Gin's writer would swallow, and keeps the
// gateway's own headers (RateLimit and the like, set before the exchange)
// for the final answer: ReverseProxy clears every header after it writes a
// 1xx. A 100 Continue is not passed on: the server sends its own when the
// proxy starts reading the request body. Nor is any 1xx of a request that
// expects 100-continue: net/http's Transport would pass it on from its read
// loop while its write loop, reading the body, has the server write its
// 100 to the same connection (a data race on the connection's buffer).
type informational struct {
	gin.ResponseWriter
	keys   [8]string
	vals   [8][]string
	more   http.Header // the gateway's headers past the first eight
	n      int
	got1xx bool
	pass   bool // 1xx answers are passed on
	// trace hands a direct exchange's 1xx answers to forward1xx; it is
	// set once, when the pool makes the writer.
	trace httptrace.ClientTrace
}

var informationalPool = sync.Pool{New: func() any {
	w := new(informational)
	w.trace.Got1xxResponse = w.forward1xx
	return w
}}

// proxyWriter wraps w for the exchange of r; release it when the exchange
// ends.
func proxyWriter(w gin.ResponseWriter, r *http.Request) *informational {
	iw := informationalPool.Get().(*informational)
	iw.ResponseWriter = w
	// The server answers any other expectation with 417 before the handler.
	iw.pass = len(r.Header["Expect"]) == 0
	for k, v := range w.Header() {
		if iw.n < len(iw.keys) {
			iw.keys[iw.n], iw.vals[iw.n] = k, v
			iw.n++
			continue
		}
		if iw.more == nil {
			iw.more = http.Header{}
		}
		iw.more[k] = v
	}
	return iw
}

func (w *informational) release() {
	*w = informational{trace: w.trace}
	informationalPool.Put(w)
}

// forward1xx writes an upstream's informational answer as ReverseProxy's
// trace does: with the answer's headers, which it then clears.
func (w *informational) forward1xx(code int, header textproto.MIMEHeader) error {
	h := w.Header()
	for k, v := range header {
		h[k] = append(h[k], v...)
	}
	w.WriteHeader(code)
	clear(h)
	return nil
}

// WriteHeader writes a 1xx passed on (see informational) to the client at
// once, with the headers set so far (the upstream's, as ReverseProxy copies
// them, after the gateway's on the first), and restores the gateway's
// headers before the final answer.
func (w *informational) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.got1xx = true
		if u, ok := w.ResponseWriter.(interface{ Unwrap() http.ResponseWriter }); ok && code != http.StatusContinue && w.pass {
			u.Unwrap().WriteHeader(code)
		}
		return
	}
	w.restore()
	w.ResponseWriter.WriteHeader(code)
}

// Hijack restores the gateway's headers before an upgrade: ReverseProxy
// writes the 101 itself, on the hijacked connection, with the headers set.
func (w *informational) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.restore()
	return w.ResponseWriter.Hijack()
}

// restore puts back the gateway's headers after a 1xx cleared them, ahead
// of any the upstream set with the same name, as if no 1xx had come.
func (w *informational) restore() {
	if !w.got1xx {
		return
	}
	w.got1xx = false
	h := w.Header()
	for i := range w.n {
		h[w.keys[i]] = append(w.vals[i][:len(w.vals[i]):len(w.vals[i])], h[w.keys[i]]...)
	}
	for k, v := range w.more {
		h[k] = append(v[:len(v):len(v)], h[k]...)
	}
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines).
func (w *informational) Unwrap() http.ResponseWriter { return w.ResponseWriter }
