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
