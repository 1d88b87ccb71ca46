package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/middleware/middlewaretest"
)

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })

// BenchmarkHandler compares a request through the net/http middleware (one
// sliding_window policy on the memory store, always admitted) with the same
// handler bare. The difference is the middleware's cost.
func BenchmarkHandler(b *testing.B) {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	p := &limiter.Policy{Name: "per-ip", Limit: 1 << 40, Window: time.Minute}
	l, err := middleware.New(store, []middleware.Rule{{Policy: p}})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", okHandler}, {"limited", l.Handler(okHandler)}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = "192.0.2.1:1234"
			w := &middlewaretest.Discard{H: make(http.Header, 8)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.H)
				tc.h.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkKeySources measures building one key: a header (which now
// carries its source), a composite of header and route, and the same with
// the count-by-status settling of a whole request.
func BenchmarkKeySources(b *testing.B) {
	req := httptest.NewRequest("GET", "/v1/orders", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	req.Header.Set("X-API-Key", "k-0123456789")
	for _, tc := range []struct {
		name string
		src  middleware.KeySource
	}{
		{"header", middleware.Header("X-API-Key")},
		{"header+route", middleware.Composite(middleware.Header("X-API-Key"), middleware.Route("orders"))},
		{"ip+method+path", middleware.Composite(middleware.IP(&middleware.IPResolver{}), middleware.Method(), middleware.Path())},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := tc.src(req); !ok {
					b.Fatal("absent")
				}
			}
		})
	}
	b.Run("count_status", func(b *testing.B) {
		store := memstore.New(memstore.Options{})
		defer store.Close()
		m, _ := middleware.Statuses("401")
		p := &limiter.Policy{Name: "logins", Limit: 1 << 40, Window: time.Minute}
		l, err := middleware.New(store, []middleware.Rule{{Policy: p, CountStatus: m}})
		if err != nil {
			b.Fatal(err)
		}
		h := l.Handler(okHandler)
		w := &middlewaretest.Discard{H: make(http.Header, 8)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.H)
			h.ServeHTTP(w, req)
		}
	})
}
