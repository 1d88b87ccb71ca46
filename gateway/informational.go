package gateway

import (
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// informational is the writer the proxy answers through. It passes an
// upstream's informational answers (102 Processing, 103 Early Hints, ...)
// on to the client, which Gin's writer would swallow, and keeps the
// gateway's own headers (RateLimit and the like, set before the exchange)
// for the final answer: ReverseProxy clears every header after it writes a
// 1xx. A 100 Continue is not passed on: the server sends its own when the
// proxy starts reading the request body.
type informational struct {
	gin.ResponseWriter
	keys   [8]string
	vals   [8][]string
	more   http.Header // the gateway's headers past the first eight
	n      int
	got1xx bool
}

var informationalPool = sync.Pool{New: func() any { return new(informational) }}

// proxyWriter wraps w for one exchange; release it when the exchange ends.
func proxyWriter(w gin.ResponseWriter) *informational {
	iw := informationalPool.Get().(*informational)
	iw.ResponseWriter = w
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
	*w = informational{}
	informationalPool.Put(w)
}

// WriteHeader writes a 1xx to the client at once, with the headers set so
// far (the upstream's, as ReverseProxy copies them), and restores the
// gateway's headers before the final answer.
func (w *informational) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.got1xx = true
		if u, ok := w.ResponseWriter.(interface{ Unwrap() http.ResponseWriter }); ok && code != http.StatusContinue {
			u.Unwrap().WriteHeader(code)
		}
		return
	}
	if w.got1xx {
		h := w.Header()
		for i := range w.n {
			if _, ok := h[w.keys[i]]; !ok {
				h[w.keys[i]] = w.vals[i]
			}
		}
		for k, v := range w.more {
			if _, ok := h[k]; !ok {
				h[k] = v
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines and the hijack of an upgrade).
func (w *informational) Unwrap() http.ResponseWriter { return w.ResponseWriter }
