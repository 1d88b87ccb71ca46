package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
)

// Limit each client IP to 2 requests per minute in front of a handler.
func ExampleLimiter_Handler() {
	store := memstore.New(memstore.Options{})
	defer store.Close()

	perIP := &limiter.Policy{Name: "per-ip", Limit: 2, Window: time.Minute}
	l, err := middleware.New(store, []middleware.Rule{{Policy: perIP}})
	if err != nil {
		panic(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	srv := l.Handler(hello)

	for range 3 {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		fmt.Println(rec.Code, rec.Header().Get("RateLimit-Policy"), rec.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 "per-ip";q=2;w=60 1
	// 200 "per-ip";q=2;w=60 0
	// 429 "per-ip";q=2;w=60 0
}

// Key by API key, falling back to the client IP, with a stricter tier for
// one key, and fail closed when the store is down.
func ExampleNew() {
	store := memstore.New(memstore.Options{})
	defer store.Close()

	perKey := &limiter.Policy{
		Name: "per-key", Algorithm: limiter.SlidingLog, Limit: 1, Window: time.Second,
		Overrides: map[string]int64{"gold": 3},
	}
	l, err := middleware.New(store, []middleware.Rule{{
		Policy: perKey,
		Keys:   []middleware.KeySource{middleware.Header("X-API-Key")},
	}}, middleware.WithErrorHandler(middleware.FailClosed))
	if err != nil {
		panic(err)
	}
	srv := l.Handler(http.NotFoundHandler())
	for _, key := range []string{"gold", "gold", "gold", "gold", "basic", "basic"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-API-Key", key)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		fmt.Println(key, rec.Code)
	}
	// Output:
	// gold 404
	// gold 404
	// gold 404
	// gold 429
	// basic 404
	// basic 429
}
