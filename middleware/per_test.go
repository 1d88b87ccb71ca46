package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
)

// keysSeen returns an observer option and the keys it saw, per policy.
func keysSeen() (middleware.Option, func() []string) {
	var mu sync.Mutex
	var seen []string
	return middleware.WithObserver(func(e middleware.Event) {
			mu.Lock()
			defer mu.Unlock()
			for i, p := range e.Policies {
				seen = append(seen, p+"="+e.Keys[i])
			}
		}), func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), seen...)
		}
}

func serve(h http.Handler, peer string, header map[string]string) int {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = peer
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestOneLiners(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	t.Run("PerIP", func(t *testing.T) {
		t.Parallel()
		obs, seen := keysSeen()
		l := middleware.PerIP(2, time.Minute, obs)
		defer l.Close()
		h := l.Handler(ok)
		var got []int
		for _, peer := range []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.2:1", "[2001:db8::1]:1", "[2001:db8::2]:1", "[2001:db8::3]:1"} {
			got = append(got, serve(h, peer, nil))
		}
		if fmt.Sprint(got) != "[200 200 429 200 200 200 429]" {
			t.Fatalf("statuses %v: want 2 per IPv4 address and 2 per IPv6 /64", got)
		}
		if s := seen(); s[0] != "per-ip=192.0.2.1" || s[4] != "per-ip=2001:db8::/64" {
			t.Fatalf("keys %v", s)
		}
	})
	t.Run("PerHeader", func(t *testing.T) {
		t.Parallel()
		obs, seen := keysSeen()
		l := middleware.PerHeader("X-API-Key", 1, time.Minute, obs)
		defer l.Close()
		h := l.Handler(ok)
		got := []int{
			serve(h, "192.0.2.1:1", map[string]string{"X-API-Key": "a"}),
			serve(h, "192.0.2.1:1", map[string]string{"X-API-Key": "b"}),
			serve(h, "192.0.2.2:1", map[string]string{"X-API-Key": "a"}),
			serve(h, "192.0.2.1:1", nil), // no key: the client IP
			serve(h, "192.0.2.1:1", nil),
		}
		if fmt.Sprint(got) != "[200 200 429 200 429]" {
			t.Fatalf("statuses %v", got)
		}
		if s := strings.Join(seen(), " "); s != "per-x-api-key=header:x-api-key:a per-x-api-key=header:x-api-key:b per-x-api-key=header:x-api-key:a per-x-api-key=192.0.2.1 per-x-api-key=192.0.2.1" {
			t.Fatalf("keys %s", s)
		}
	})
	t.Run("PerKeyOnAGivenStore", func(t *testing.T) {
		t.Parallel()
		store := memstore.New(memstore.Options{})
		defer store.Close()
		tenant := func(r *http.Request) (string, bool) {
			v := r.URL.Query().Get("tenant")
			return v, v != ""
		}
		l := middleware.PerKey(tenant, 3, time.Hour, middleware.WithStore(store), middleware.WithName("tenants"),
			middleware.WithAlgorithm(limiter.FixedWindow))
		l.Close() // not its store: must leave it open
		h := l.Handler(ok)
		for i := range 4 {
			req := httptest.NewRequest(http.MethodGet, "/?tenant=acme", nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if want := []int{200, 200, 200, 429}[i]; rec.Code != want {
				t.Fatalf("request %d: %d, want %d", i+1, rec.Code, want)
			}
			if p := rec.Header().Get("RateLimit-Policy"); p != `"tenants";q=3;w=3600` {
				t.Fatalf("RateLimit-Policy %q", p)
			}
		}
		// The counts live in the given store, under the given policy.
		u, err := store.Peek(t.Context(), &limiter.Policy{Name: "tenants", Algorithm: limiter.FixedWindow, Limit: 3, Window: time.Hour, Buckets: limiter.DefaultBuckets}, "acme")
		if err != nil || u.Count != 3 || u.Rejected != 1 {
			t.Fatalf("store holds %+v (%v), want count 3, rejected 1", u, err)
		}
	})
}

// TestMisuse: each mistake is refused when the limiter is built, with an
// error that names it; the one-liners panic with the same message.
func TestMisuse(t *testing.T) {
	t.Parallel()
	store := memstore.New(memstore.Options{})
	defer store.Close()
	p := func(name string) *limiter.Policy {
		return &limiter.Policy{Name: name, Limit: 1, Window: time.Minute}
	}
	for _, tc := range []struct {
		name  string
		build func() (*middleware.Limiter, error)
		want  string
	}{
		{"limit 0", func() (*middleware.Limiter, error) { return middleware.Limit(0, time.Minute) }, "limit must be at least 1, got 0"},
		{"negative limit", func() (*middleware.Limiter, error) { return middleware.Limit(-5, time.Minute) }, "limit must be at least 1, got -5"},
		{"zero window", func() (*middleware.Limiter, error) { return middleware.Limit(10, 0) }, "window must be at least 1ms, got 0s"},
		{"sub-millisecond window", func() (*middleware.Limiter, error) { return middleware.Limit(10, time.Microsecond) }, "window must be at least 1ms, got 1µs"},
		{"nil store", func() (*middleware.Limiter, error) {
			return middleware.Limit(10, time.Minute, middleware.WithStore(nil))
		}, "WithStore(nil)"},
		{"nil key", func() (*middleware.Limiter, error) { return middleware.Limit(10, time.Minute, middleware.WithKey(nil)) }, "WithKey(nil)"},
		{"bad name", func() (*middleware.Limiter, error) {
			return middleware.Limit(10, time.Minute, middleware.WithName("a b"))
		}, `policy "a b": name: must match`},
		{"bad algorithm", func() (*middleware.Limiter, error) {
			return middleware.Limit(10, time.Minute, middleware.WithAlgorithm("leaky"))
		}, `algorithm: must be one of`},
		{"New: nil store", func() (*middleware.Limiter, error) { return middleware.New(nil, []middleware.Rule{{Policy: p("a")}}) }, "nil store"},
		{"New: duplicate policy names", func() (*middleware.Limiter, error) {
			return middleware.New(store, []middleware.Rule{{Policy: p("a")}, {Policy: p("b")}, {Policy: p("a")}})
		}, `rules 0 and 2 both name policy "a"`},
		{"New: one-policy option", func() (*middleware.Limiter, error) {
			return middleware.New(store, []middleware.Rule{{Policy: p("a")}}, middleware.WithStore(store))
		}, "WithStore is for PerIP"},
		{"New: zero window", func() (*middleware.Limiter, error) {
			return middleware.New(store, []middleware.Rule{{Policy: &limiter.Policy{Name: "a", Limit: 1}}})
		}, `policy "a": window: must be > 0`},
		{"New: limit 0", func() (*middleware.Limiter, error) {
			return middleware.New(store, []middleware.Rule{{Policy: &limiter.Policy{Name: "a", Window: time.Second}}})
		}, `policy "a": limit: must be > 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := tc.build()
			if err == nil {
				l.Close()
				t.Fatalf("built a limiter; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "middleware: ") {
				t.Fatalf("error %q, want it to start with middleware: and contain %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		call func()
		want string
	}{
		{"PerIP", func() { middleware.PerIP(0, time.Minute) }, "middleware: PerIP: limit must be at least 1, got 0"},
		{"PerHeader", func() { middleware.PerHeader("X-Key", 5, 0) }, "middleware: PerHeader: window must be at least 1ms, got 0s"},
		{"PerHeader empty", func() { middleware.PerHeader("", 5, time.Second) }, "middleware: PerHeader: empty header name"},
		{"PerKey", func() { middleware.PerKey(nil, 5, time.Second) }, "middleware: PerKey: nil key"},
		{"PerIP nil store", func() { middleware.PerIP(5, time.Second, middleware.WithStore(nil)) }, "middleware: PerIP: WithStore(nil)"},
	} {
		t.Run("panic/"+tc.name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.HasPrefix(msg, tc.want) {
					t.Fatalf("panic %q, want it to start with %q", msg, tc.want)
				}
			}()
			tc.call()
		})
	}
}

// TestDroppedLimiterStopsItsStore: a one-liner's memory store has a sweeper
// goroutine; Close stops it, and so does dropping the limiter.
func TestDroppedLimiterStopsItsStore(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	base := runtime.NumGoroutine()
	l := middleware.PerIP(5, time.Minute)
	if n := runtime.NumGoroutine(); n < base+1 {
		t.Fatalf("%d goroutines after PerIP, want %d (one sweeper)", n, base+1)
	}
	l.Close()
	waitGoroutines(t, base)

	func() {
		h := middleware.PerIP(5, time.Minute).Handler(http.NotFoundHandler())
		serve(h, "192.0.2.1:1", nil)
	}()
	waitGoroutines(t, base)
}

// waitGoroutines collects garbage until the process is back to want
// goroutines. Cleanups run on their own goroutine after a collection, so
// this polls; it gives up after a few seconds.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want %d: the limiter's store was not stopped", runtime.NumGoroutine(), want)
		}
		runtime.GC()
		runtime.Gosched()
	}
}
