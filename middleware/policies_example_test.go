package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
)

// One request per minute for each API key on each route: a Composite key
// needs all of its parts. Under a ServeMux, Route("") is the pattern that
// matched. Keys carry their source, joined by "|".
func ExampleComposite() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	perKeyRoute := &limiter.Policy{Name: "per-key-route", Limit: 1, Window: time.Minute}
	l, err := middleware.New(store, []middleware.Rule{{
		Policy: perKeyRoute,
		Keys:   []middleware.KeySource{middleware.Composite(middleware.Header("X-API-Key"), middleware.Route(""))},
	}})
	if err != nil {
		panic(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mux := http.NewServeMux()
	mux.Handle("GET /orders", l.Handler(ok))
	mux.Handle("GET /users", l.Handler(ok))
	for _, path := range []string{"/orders", "/orders", "/users"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("X-API-Key", "k1")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(path, rec.Code)
	}
	u, _ := store.Peek(context.Background(), perKeyRoute, "header:x-api-key:k1|route:GET /orders")
	fmt.Println(u.Key, u.Count)
	// Output:
	// /orders 200
	// /orders 429
	// /users 200
	// header:x-api-key:k1|route:GET /orders 1
}

// A request's cost from a header, within bounds: a batch of 4 uses 4 of the
// 10 units; a cost outside the bounds is 400.
func ExampleWithCost() {
	// A stopped clock, so that the retry time printed below is fixed.
	store := memstore.New(memstore.Options{Clock: func() time.Time { return time.Unix(1_800_000_000, 0) }})
	defer store.Close()
	l := middleware.PerIP(10, time.Minute, middleware.WithStore(store),
		middleware.WithCost(middleware.HeaderCost("X-Batch-Size", 1, 1, 8)))
	defer l.Close()
	srv := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, size := range []string{"4", "4", "4", "9"} {
		req := httptest.NewRequest("POST", "/batch", nil)
		req.Header.Set("X-Batch-Size", size)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		line := fmt.Sprint("size ", size, ": ", rec.Code)
		if r := rec.Header().Get("X-RateLimit-Remaining"); r != "" {
			line += ", remaining " + r
		}
		if rec.Code != 200 {
			line += " " + strings.TrimSpace(rec.Body.String())
		}
		fmt.Println(line)
	}
	// Output:
	// size 4: 200, remaining 6
	// size 4: 200, remaining 2
	// size 4: 429, remaining 2 {"error":"rate limit exceeded","policy":"per-ip","retry_after_seconds":66,"cost":4}
	// size 9: 400 {"error":"bad request cost: X-Batch-Size must be a whole number from 1 to 8"}
}

// Brute-force protection: 5 failed logins (401) per 10 minutes; successful
// logins are refunded, so they never use the quota.
func ExampleStatuses() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	failed, err := middleware.Statuses("401")
	if err != nil {
		panic(err)
	}
	logins := &limiter.Policy{Name: "logins", Limit: 5, Window: 10 * time.Minute}
	l, err := middleware.New(store, []middleware.Rule{{Policy: logins, CountStatus: failed}})
	if err != nil {
		panic(err)
	}
	srv := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "right" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	try := func(pw string) int {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("POST", "/login?password="+pw, nil))
		return rec.Code
	}
	var codes []int
	for range 3 {
		codes = append(codes, try("right"))
	}
	for range 6 {
		codes = append(codes, try("wrong"))
	}
	codes = append(codes, try("right"))
	u, _ := store.Peek(context.Background(), logins, "192.0.2.1")
	fmt.Println(codes, "failures counted:", u.Count)
	// Output: [200 200 200 401 401 401 401 401 429 429] failures counted: 5
}
