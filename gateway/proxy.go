package gateway

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/gateway/internal/upstream"
	"github.com/sluice-gateway/sluice/middleware"
)

// route is one compiled entry of the route table.
type route struct {
	name     string
	upstream prometheus.Observer // sluice_upstream_duration_seconds{route}
	codes    sync.Map            // status code -> sluice_requests_total{route,code}
	prefix   string              // without a trailing slash, except "/"
	host     string              // lower case, no port; empty matches any host
	methods  []string
	proxy    *httputil.ReverseProxy
	direct   *directProxy // proxy's cheaper path; nil unless the fast transport serves the upstream itself
	respond  *RespondConfig
	limiter  *middleware.Limiter // nil when the route has no policies
}

// matchPath reports whether path lies under prefix in whole segments.
func matchPath(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// routeTable finds the route for a request: the longest matching prefix
// (host-specific routes first at equal length) whose methods allow it.
type routeTable []*route

func newRouteTable(routes []*route) routeTable {
	t := routeTable(routes)
	sort.SliceStable(t, func(i, j int) bool {
		if len(t[i].prefix) != len(t[j].prefix) {
			return len(t[i].prefix) > len(t[j].prefix)
		}
		return t[i].host != "" && t[j].host == ""
	})
	return t
}

// match returns the route for r, or nil and the methods that the path
// would allow (nil when no route matches the path at all).
func (t routeTable) match(r *http.Request) (*route, []string) {
	host := ""
	path := routingPath(r.URL.Path)
	var allow []string
	for _, rt := range t {
		if rt.host != "" {
			if host == "" {
				host = hostOnly(r.Host)
			}
			if rt.host != host {
				continue
			}
		}
		if !matchPath(rt.prefix, path) {
			continue
		}
		if len(rt.methods) == 0 {
			return rt, nil
		}
		for _, m := range rt.methods {
			if m == r.Method || (r.Method == http.MethodHead && m == http.MethodGet) {
				return rt, nil
			}
		}
		allow = append(allow, rt.methods...)
	}
	return nil, allow
}

// copyBufferSize is the size of the proxy's copy buffers.
const copyBufferSize = 32 << 10

// bufferPool hands the proxy 32 KiB copy buffers instead of allocating one
// per response. It pools pointers to the arrays themselves, so that
// neither Get nor Put allocates (a pool of *[]byte would allocate a new
// slice header at each Put).
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(p []byte) {
	if cap(p) >= copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(p[:copyBufferSize]))
	}
}

// transportFor returns the Transport for upstreams whose time to response
// headers is bounded by timeout. Routes with the same timeout share one, so
// they share idle connections.
func (g *Gateway) transportFor(timeout time.Duration) *http.Transport {
	g.transportsMu.Lock()
	defer g.transportsMu.Unlock()
	t, ok := g.transports[timeout]
	if !ok {
		t = newTransport()
		t.ResponseHeaderTimeout = timeout
		t.MaxResponseHeaderBytes = upstream.DefaultMaxResponseHeaderBytes // as the fast transport's
		g.transports[timeout] = t
	}
	return t
}

// dialTimeout bounds connecting to an upstream.
const dialTimeout = 5 * time.Second

// newTransport returns a Transport tuned for a proxy: many idle connections
// per host, no transparent compression, no environment proxy.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2048,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ReadBufferSize:        16 << 10,
		WriteBufferSize:       16 << 10,
	}
}

// newProxy returns the reverse proxy of one upstream route, and its
// directProxy when the route's transport serves the upstream itself.
func (g *Gateway) newProxy(name, prefix string, up *UpstreamConfig, ip *middleware.IPResolver, trusted bool) (*httputil.ReverseProxy, *directProxy, error) {
	target, err := url.Parse(up.URL)
	if err != nil {
		return nil, nil, err
	}
	strip := up.StripPrefix && prefix != "/"
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			if strip {
				pr.Out.URL.Path = ensureSlash(strings.TrimPrefix(pr.In.URL.Path, prefix))
				pr.Out.URL.RawPath = ""
				if raw := pr.In.URL.RawPath; raw != "" && strings.HasPrefix(raw, prefix) {
					pr.Out.URL.RawPath = ensureSlash(raw[len(prefix):])
				}
			}
			pr.SetURL(target)
			// Extend the forwarding chain only when it came from a trusted
			// proxy; otherwise the client could write its own history.
			if trusted && ip != nil && ip.TrustsPeer(pr.In) {
				pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			} else {
				// Nor may it name itself in X-Real-IP, which upstreams
				// behind a proxy read as the client (and we do not believe).
				pr.Out.Header.Del("X-Real-Ip")
			}
			setXForwarded(pr)
		},
		Transport:  g.roundTripperFor(up),
		ErrorLog:   slog.NewLogLogger(g.log.Load().Handler(), slog.LevelDebug),
		BufferPool: g.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// A client whose body failed (malformed, cut short, too slow)
			// or whose connection went is at fault, not the upstream.
			gone := r.Context().Err() != nil
			if status, msg := clientFault(r, gone); status != 0 {
				g.log.Load().Debug("client body error", "route", name, "err", err)
				middleware.WriteJSONError(w, status, msg)
				return
			}
			if gone {
				middleware.WriteJSONError(w, statusClientClosed, "client closed the request")
				return
			}
			status, msg := http.StatusBadGateway, "upstream unreachable"
			var nerr net.Error
			if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
				status, msg = http.StatusGatewayTimeout, "upstream timed out"
			}
			g.log.Load().Debug("upstream error", "route", name, "err", err)
			middleware.WriteJSONError(w, status, msg)
		},
	}
	if ft, ok := rp.Transport.(*upstream.Transport); ok && ft.Serves(target) {
		return rp, &directProxy{rp: rp, t: ft, log: g.log.Load}, nil
	}
	return rp, nil, nil
}

// setXForwarded is httputil.ProxyRequest.SetXForwarded with one
// allocation for the three headers' values instead of one each.
func setXForwarded(r *httputil.ProxyRequest) {
	vals := make([]string, 3)
	h := r.Out.Header
	if clientIP, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		vals[0] = clientIP
		h["X-Forwarded-For"] = vals[0:1:1]
	} else {
		delete(h, "X-Forwarded-For")
	}
	vals[1] = r.In.Host
	h["X-Forwarded-Host"] = vals[1:2:2]
	vals[2] = "http"
	if r.In.TLS != nil {
		vals[2] = "https"
	}
	h["X-Forwarded-Proto"] = vals[2:3:3]
}

// statusClientClosed is the status logged and counted for a request whose
// client went away before its answer (nginx's 499); the client never sees it.
const statusClientClosed = 499

func ensureSlash(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}
