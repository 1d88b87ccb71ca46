package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/sluice-gateway/sluice/gateway/internal/upstream"
)

// directProxy is the proxy of a route whose upstream the fast transport
// serves itself (plain HTTP, where every exchange runs on the request's
// goroutine). It behaves as the route's httputil.ReverseProxy, with the same
// Rewrite, transport and ErrorHandler, without ReverseProxy's deep copy of
// each request: the outbound request is a shallow copy whose header map is
// built once without the headers ReverseProxy removes (instead of a clone of
// every header followed by a Header.Del for each hop-by-hop name), and the
// answer's header values move to the client's header map instead of being
// copied one by one. The outbound request, its URL and header map are
// reused from exchange to exchange (see outbound), and the 1xx trace is the
// pooled writer's, given to the transport without a context.
//
// What ReverseProxy does beyond that it is handed: requests that ask to
// upgrade the connection (WebSocket and the like), and query strings that
// ReverseProxy would re-encode (see plainQuery).
//
// It is safe for concurrent use.
type directProxy struct {
	rp  *httputil.ReverseProxy // its Transport is t
	t   *upstream.Transport
	log func() *slog.Logger
}

// outbound is the outbound request of a direct exchange, with its URL and
// header map, and the ProxyRequest that Rewrite gets. Nothing holds it past
// the exchange, which runs on the request's goroutine, so it is pooled.
type outbound struct {
	req    http.Request
	url    url.URL
	header http.Header
	pr     httputil.ProxyRequest
}

var outbounds = sync.Pool{New: func() any { return &outbound{header: http.Header{}} }}

// maxPooledHeader bounds the header map an outbound goes back to the pool
// with: clearing a map costs its size, which only grows.
const maxPooledHeader = 64

func (o *outbound) release() {
	h := o.header
	if len(h) > maxPooledHeader {
		h = http.Header{}
	} else {
		clear(h)
	}
	*o = outbound{header: h}
	outbounds.Put(o)
}

// hopHeaders are the hop-by-hop headers a proxy never forwards (RFC 9110
// 7.6.1, and the older ones ReverseProxy also removes), beside those the
// Connection header names.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// forwardingHeaders are the client's own forwarding headers, which the
// proxy drops before Rewrite sets its own (as ReverseProxy does with a
// Rewrite hook).
var forwardingHeaders = map[string]bool{
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
}

// reencodesQueries reports whether GODEBUG sets urlmaxqueryparams, with
// which ReverseProxy re-encodes every query string.
var reencodesQueries = strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams")

// maxQueryParams is net/url's default bound on the parameters of a query;
// ReverseProxy re-encodes a query with more.
const maxQueryParams = 10000

// plainQuery reports whether ReverseProxy passes the query q on as it is:
// no ';', no '%' (whose escapes it checks), and not too many parameters.
func plainQuery(q string) bool {
	return q == "" || !reencodesQueries && !strings.ContainsAny(q, ";%") && strings.Count(q, "&") < maxQueryParams
}

// serve proxies req, answering through w.
func (p *directProxy) serve(w *informational, req *http.Request) {
	if len(req.Header["Upgrade"]) > 0 || !plainQuery(req.URL.RawQuery) {
		p.rp.ServeHTTP(w, req)
		return
	}
	o := outbounds.Get().(*outbound)
	defer o.release()
	o.req = *req // its context too: the trace goes to the transport apart
	out := &o.req
	if req.ContentLength == 0 {
		out.Body = nil // as ReverseProxy: a request without a body may be retried
	}
	out.Close = false
	if req.Trailer != nil {
		out.Trailer = req.Trailer.Clone() // as Request.Clone does
	}
	o.url = *req.URL
	out.URL = &o.url
	h := o.header
	for k, v := range req.Header {
		if !hopHeaders[k] && !forwardingHeaders[k] {
			h[k] = v
		}
	}
	removeConnectionHeaders(h, req.Header["Connection"])
	if httpguts.HeaderValuesContainsToken(req.Header["Te"], "trailers") {
		// Tell the upstream that trailers get through (ReverseProxy's
		// issue 21096).
		h["Te"] = []string{"trailers"}
	}
	out.Header = h
	o.pr = httputil.ProxyRequest{In: req, Out: out}
	p.rp.Rewrite(&o.pr)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // not Go's default
	}
	res, err := p.t.RoundTripTrace(out, &w.trace)
	if err != nil {
		p.rp.ErrorHandler(w, out, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Only an upgrade request, which ReverseProxy serves, may be
		// answered 101; the transport refuses it to any other.
		res.Body.Close()
		p.rp.ErrorHandler(w, out, errors.New("upstream switched protocols unasked"))
		return
	}
	removeConnectionHeaders(res.Header, res.Header["Connection"])
	dst := w.Header()
	for k, v := range res.Header {
		if hopHeaders[k] {
			continue
		}
		if len(dst[k]) == 0 {
			dst[k] = v[:len(v):len(v)] // res is ours: its values need no copy
		} else {
			dst[k] = append(dst[k], v...)
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst["Trailer"] = append(dst["Trailer"], strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	if err := p.copyBody(w, res); err != nil {
		res.Body.Close()
		// The client cannot be told: abort its connection, so that it
		// sees a truncated answer as one (ReverseProxy's issue 23643).
		panic(http.ErrAbortHandler)
	}
	res.Body.Close() // now, so that res.Trailer is complete
	if len(res.Trailer) > 0 {
		// Trailers need a chunked answer, whatever its length.
		_ = http.NewResponseController(w).Flush()
	}
	if len(res.Trailer) == announced {
		for k, v := range res.Trailer {
			dst[k] = append(dst[k], v...)
		}
		return
	}
	for k, v := range res.Trailer {
		k = http.TrailerPrefix + k
		dst[k] = append(dst[k], v...)
	}
}

// copyBody copies the answer's body to w, flushing after each write when
// the answer streams (Server-Sent Events, or a body of unknown length), as
// ReverseProxy does with its default FlushInterval.
func (p *directProxy) copyBody(w *informational, res *http.Response) error {
	var flush func() error
	if streams(res) {
		flush = http.NewResponseController(w).Flush
		// The head goes out now, even if the body is slow to come.
		// Like ReverseProxy, it leaves a failed flush to the next write.
		_ = flush()
	}
	buf := p.rp.BufferPool.Get()
	defer p.rp.BufferPool.Put(buf)
	for {
		n, rerr := res.Body.Read(buf)
		if rerr != nil && rerr != io.EOF && !errors.Is(rerr, context.Canceled) {
			p.log().Debug("upstream body read error", "err", rerr)
		}
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flush != nil {
				_ = flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// streams reports whether res is copied with a flush after each write:
// Server-Sent Events, or a body of unknown length.
func streams(res *http.Response) bool {
	if res.ContentLength == -1 {
		return true
	}
	ct := res.Header["Content-Type"]
	if len(ct) == 0 || !strings.Contains(strings.ToLower(ct[0]), "event-stream") {
		return false
	}
	base, _, _ := mime.ParseMediaType(ct[0])
	return base == "text/event-stream"
}

// removeConnectionHeaders removes from h the headers that the Connection
// values conn name (RFC 9110 7.6.1).
func removeConnectionHeaders(h http.Header, conn []string) {
	for _, f := range conn {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
}
