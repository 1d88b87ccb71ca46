package gateway

import (
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/gateway/internal/upstream"
)

// The values of upstream_transport and routes[].upstream.transport.
const (
	// TransportFast is upstream.Transport: the exchange on the request's
	// goroutine over a pool of idle connections, handing https upstreams
	// to the standard Transport.
	TransportFast = "fast"
	// TransportStandard is net/http's Transport.
	TransportStandard = "standard"
)

// roundTripperFor returns the client of an upstream route. Routes with the
// same response-header timeout and transport share one, so they share idle
// connections; the fast one hands what it does not do to the standard one
// of the same timeout.
func (g *Gateway) roundTripperFor(up *UpstreamConfig) http.RoundTripper {
	std := g.transportFor(up.Timeout)
	if up.Transport == TransportStandard {
		return std
	}
	g.transportsMu.Lock()
	defer g.transportsMu.Unlock()
	if g.fast == nil {
		g.fast = map[time.Duration]*upstream.Transport{}
	}
	t, ok := g.fast[up.Timeout]
	if !ok {
		t = &upstream.Transport{
			DialTimeout:            dialTimeout,
			ResponseHeaderTimeout:  up.Timeout,
			IdleTimeout:            std.IdleConnTimeout,
			MaxIdlePerHost:         std.MaxIdleConnsPerHost,
			MaxResponseHeaderBytes: std.MaxResponseHeaderBytes,
			Fallback:               std,
		}
		g.fast[up.Timeout] = t
	}
	return t
}

// closeIdleUpstreams closes the idle connections of every upstream client.
func (g *Gateway) closeIdleUpstreams() {
	g.transportsMu.Lock()
	defer g.transportsMu.Unlock()
	for _, t := range g.transports {
		t.CloseIdleConnections()
	}
	for _, t := range g.fast {
		t.CloseIdleConnections()
	}
}
