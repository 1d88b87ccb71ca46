// Package oneline compares, on the same handler, what it takes to put a
// per-client limit in front of it with Sluice's one-line middleware and with
// go-chi/httprate: the lines of code (TestLinesOfCode counts the bodies of
// the functions below) and the allocations per request (BenchmarkPerRequest).
//
//	cd benchmarks && go test ./oneline -run LinesOfCode -v -bench . -benchtime 20000x -benchmem
package oneline

import (
	"net/http"
	"time"

	"github.com/go-chi/httprate"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
)

const window = time.Minute

// Each function puts limit requests per window in front of h, the way a
// program would write it.

// sluicePerIP: per client IP (the TCP peer, IPv6 by /64).
func sluicePerIP(h http.Handler, limit int) http.Handler {
	return middleware.PerIP(limit, window).Handler(h)
}

// httprateByIP: the same keying (RemoteAddr, IPv6 by /64). httprate v0.16
// deprecates LimitByIP in favour of chi's ClientIPFrom* middleware plus
// LimitBy with a key function, which takes more lines.
func httprateByIP(h http.Handler, limit int) http.Handler {
	return httprate.LimitByIP(limit, window)(h)
}

// sluicePerHeader: per API key.
func sluicePerHeader(h http.Handler, limit int) http.Handler {
	return middleware.PerHeader("X-API-Key", limit, window).Handler(h)
}

// httpratePerHeader: per API key. (Sluice falls back to the client IP when
// the header is missing; this keys all such requests together.)
func httpratePerHeader(h http.Handler, limit int) http.Handler {
	return httprate.LimitBy(limit, window, func(r *http.Request) (string, error) {
		return r.Header.Get("X-API-Key"), nil
	})(h)
}

// sluiceBefore: per client IP as Sluice needed it before the one-liners.
func sluiceBefore(h http.Handler, limit int) http.Handler {
	store := memstore.New(memstore.Options{})
	l, err := middleware.New(store, []middleware.Rule{{
		Policy: &limiter.Policy{Name: "per-ip", Limit: int64(limit), Window: window},
	}})
	if err != nil {
		panic(err)
	}
	return l.Handler(h)
}
