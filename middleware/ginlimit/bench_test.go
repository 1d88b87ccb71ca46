package ginlimit_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/middleware/ginlimit"
	"github.com/sluice-gateway/sluice/middleware/middlewaretest"
)

// BenchmarkGin compares a Gin route behind ginlimit (one sliding_window
// policy on the memory store, always admitted; by client IP, or by a
// header) with the same route bare.
func BenchmarkGin(b *testing.B) {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	p := &limiter.Policy{Name: "per-ip", Limit: 1 << 40, Window: time.Minute}
	limit, err := ginlimit.New(store, []middleware.Rule{{Policy: p}})
	if err != nil {
		b.Fatal(err)
	}
	handler := func(c *gin.Context) { c.Status(200) }
	bare := gin.New()
	bare.GET("/", handler)
	limited := gin.New()
	limited.GET("/", limit, handler)
	// Keyed by a header that is present: Gin's c.ClientIP() is not called.
	byHeader := gin.New()
	byHeader.GET("/", ginlimit.PerHeader("X-API-Key", 1<<30, time.Minute, middleware.WithStore(store)), handler)
	for _, tc := range []struct {
		name string
		e    *gin.Engine
	}{{"bare", bare}, {"limited", limited}, {"per-header", byHeader}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = "192.0.2.1:1234"
			req.Header.Set("X-API-Key", "k-123")
			w := &middlewaretest.Discard{H: make(http.Header, 8)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.H)
				tc.e.ServeHTTP(w, req)
			}
		})
	}
}
