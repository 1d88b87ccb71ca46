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

// Two requests a minute per client IP, in front of any http.Handler.
func ExamplePerIP() {
	limited := middleware.PerIP(2, time.Minute) // a memory store of its own
	defer limited.Close()
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	srv := limited.Handler(hello)

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

// One request a second per API key, counted in a store of the caller's
// (here a memory store; a redisstore.Store shares the counts among gateways).
func ExamplePerHeader() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	srv := middleware.PerHeader("X-API-Key", 1, time.Second, middleware.WithStore(store)).Handler(http.NotFoundHandler())

	for _, key := range []string{"alice", "alice", "bob"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-API-Key", key)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		fmt.Println(key, rec.Code, rec.Header().Get("RateLimit-Policy"))
	}
	// Output:
	// alice 404 "per-x-api-key";q=1;w=1
	// alice 429 "per-x-api-key";q=1;w=1
	// bob 404 "per-x-api-key";q=1;w=1
}

// Limit is the form that returns its error, for limits read from
// configuration; PerIP would panic here.
func ExampleLimit() {
	limit, window := 100, time.Duration(0) // as read from a config file
	if _, err := middleware.Limit(limit, window); err != nil {
		fmt.Println(err)
	}
	// Output: middleware: window must be at least 1ms, got 0s
}

// Several policies at once: a request passes only if every one admits it.
func ExampleNew() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	l, err := middleware.New(store, []middleware.Rule{
		{Policy: &limiter.Policy{Name: "burst", Limit: 2, Window: time.Second}},
		{Policy: &limiter.Policy{Name: "hourly", Limit: 1000, Window: time.Hour}},
	}, middleware.WithErrorHandler(middleware.FailClosed)) // 503 when the store fails
	if err != nil {
		panic(err)
	}
	for range 3 {
		rec := httptest.NewRecorder()
		l.Handler(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		fmt.Println(rec.Code, rec.Header().Get("RateLimit-Policy"), rec.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 404 "burst";q=2;w=1 1
	// 404 "burst";q=2;w=1 0
	// 429 "burst";q=2;w=1 0
}
