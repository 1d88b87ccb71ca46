package gateway

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/sluice-gateway/sluice/middleware"
)

// The HTTP decision endpoint answers an edge proxy that asks, before it
// forwards a request, whether Sluice admits it: nginx's auth_request,
// Traefik's ForwardAuth and Caddy's forward_auth. The proxy describes the
// original request in headers; the endpoint rebuilds it and runs it through
// the same route table and the same route limiter as the proxy listener, so
// a request is matched, keyed, charged, observed (metrics, history, alerts)
// and answered exactly as if Sluice proxied it. Only the answer differs:
//
//   - admitted: 200 with an empty body and the rate-limit headers;
//   - rejected: 429 with Retry-After and the JSON body, except on /nginx,
//     where it is 403, because auth_request passes on only 2xx, 401 and 403
//     (the README's nginx snippet turns that 403 into a 429);
//   - no route for it, or a route without policies: 200, not limited;
//   - missing key with on_missing_key: reject: 400; store failure with
//     on_error: deny: 503; a description the endpoint cannot read, or a path
//     the proxy listener would refuse to clean: 400.
//
// The described path is cleaned as the proxy listener cleans paths (dot
// segments, duplicate slashes) before it is matched.
//
// The path names the form the proxy uses:
//
//	/nginx            X-Original-URI, X-Original-Method, X-Original-Host
//	/traefik, /caddy  X-Forwarded-Uri, X-Forwarded-Method, X-Forwarded-Host, X-Forwarded-Proto
//
// The form is chosen by the path, never by which headers are present:
// Traefik and Caddy pass the client's own headers along, so a client could
// otherwise add an X-Original-URI of its choosing. Either way the client
// address comes from X-Forwarded-For or X-Real-IP when the calling proxy is
// in decision.trusted_proxies (default: trusted_proxies), and is the calling
// proxy's own address otherwise.

// decisionForm is one way a proxy describes the original request.
type decisionForm struct {
	uri, method, host, proto string // header names
	rejectStatus             int
}

var (
	nginxForm       = &decisionForm{uri: "X-Original-Uri", method: "X-Original-Method", host: "X-Original-Host", rejectStatus: http.StatusForbidden}
	forwardAuthForm = &decisionForm{uri: "X-Forwarded-Uri", method: "X-Forwarded-Method", host: "X-Forwarded-Host", proto: "X-Forwarded-Proto", rejectStatus: http.StatusTooManyRequests}
)

// describingHeaders are the headers that describe the call rather than the
// original request; the rebuilt request does not carry them, so the route
// limiter finds the client address in RemoteAddr alone.
var describingHeaders = []string{
	"X-Original-Uri", "X-Original-Method", "X-Original-Host", "X-Original-Url",
	"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Server",
	"X-Forwarded-For", "X-Real-Ip", "Forwarded", "Content-Length",
}

// decisionHandler serves the decision listener.
func (g *Gateway) decisionHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/nginx", func(w http.ResponseWriter, r *http.Request) { g.serveDecision(w, r, nginxForm) })
	mux.HandleFunc("/traefik", func(w http.ResponseWriter, r *http.Request) { g.serveDecision(w, r, forwardAuthForm) })
	mux.HandleFunc("/caddy", func(w http.ResponseWriter, r *http.Request) { g.serveDecision(w, r, forwardAuthForm) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		middleware.WriteJSONError(w, http.StatusNotFound, "no such decision endpoint; use /nginx, /traefik or /caddy")
	})
	return mux
}

// serveDecision decides the request that r describes.
func (g *Gateway) serveDecision(w http.ResponseWriter, r *http.Request, f *decisionForm) {
	st := g.state.Load()
	orig, err := f.original(r, st.decisionIP)
	if err != nil {
		middleware.WriteJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The proxy listener's path cleaning, so "/open/../api" is charged
	// as "/api".
	if !cleanRequestPath(orig) {
		middleware.WriteJSONError(w, http.StatusBadRequest, uncleanPath)
		return
	}
	rt, _ := st.routes.match(orig)
	if rt == nil || rt.limiter == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	var rw http.ResponseWriter = w
	if f.rejectStatus != http.StatusTooManyRequests {
		rw = &statusMapper{ResponseWriter: w, from: http.StatusTooManyRequests, to: f.rejectStatus}
	}
	if proceed, _ := rt.limiter.CheckDecision(rw, orig); proceed {
		w.WriteHeader(http.StatusOK)
	}
}

// original rebuilds the request that r describes in form f; ip decides
// whether r's forwarding headers are believed.
func (f *decisionForm) original(r *http.Request, ip *middleware.IPResolver) (*http.Request, error) {
	h := r.Header
	rawURI := h.Get(f.uri)
	if rawURI == "" {
		return nil, errors.New("missing " + f.uri)
	}
	u, err := url.ParseRequestURI(rawURI)
	if err != nil || u.Path == "" || u.Path[0] != '/' {
		return nil, errors.New("bad " + f.uri + ": want a path and an optional query")
	}
	method := h.Get(f.method)
	if method == "" {
		method = r.Method
	} else if !validMethod(method) {
		return nil, errors.New("bad " + f.method)
	}
	host := h.Get(f.host)
	if host == "" {
		host = r.Host
	}
	if f.proto != "" {
		if p := h.Get(f.proto); p == "http" || p == "https" {
			u.Scheme = p
		}
	}
	client := ip.ClientIP(r)
	if !client.IsValid() {
		return nil, errors.New("cannot tell the client address")
	}
	hdr := h.Clone()
	for _, k := range describingHeaders {
		delete(hdr, k)
	}
	orig := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      r.Proto,
		ProtoMajor: r.ProtoMajor,
		ProtoMinor: r.ProtoMinor,
		Header:     hdr,
		Host:       host,
		RemoteAddr: netip.AddrPortFrom(client, 0).String(),
		RequestURI: rawURI,
	}
	return orig.WithContext(r.Context()), nil
}

// validMethod reports whether m is an HTTP method token.
func validMethod(m string) bool {
	if len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return m != ""
}

// statusMapper turns one status code into another, leaving the headers and
// the body alone.
type statusMapper struct {
	http.ResponseWriter
	from, to int
}

func (w *statusMapper) WriteHeader(code int) {
	if code == w.from {
		code = w.to
	}
	w.ResponseWriter.WriteHeader(code)
}
