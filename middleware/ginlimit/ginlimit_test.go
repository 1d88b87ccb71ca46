package ginlimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/middleware/ginlimit"
	"github.com/sluice-gateway/sluice/middleware/middlewaretest"
)

func init() { gin.SetMode(gin.ReleaseMode) }

func TestBehaviour(t *testing.T) {
	t.Parallel()
	middlewaretest.Run(t, func(t *testing.T, l *middleware.Limiter, h http.Handler) http.Handler {
		r := gin.New()
		r.Use(ginlimit.Middleware(l))
		r.Any("/*path", gin.WrapH(h))
		return r
	})
}

// TestTrustedProxies: the client address is Gin's c.ClientIP(), so the
// engine's SetTrustedProxies decides whether X-Forwarded-For is believed;
// WithIPResolver puts Sluice's own rules in its place.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		trusted []string // the engine's trusted proxies
		opts    []middleware.Option
		peer    string
		xff     string
		want    string
	}{
		{"trusted proxy: the forwarded client", []string{"10.0.0.0/8"}, nil, "10.1.2.3:80", "203.0.113.7", "203.0.113.7"},
		{"trusted chain: right-most untrusted", []string{"10.0.0.0/8"}, nil, "10.1.2.3:80", "6.6.6.6, 203.0.113.8, 10.9.9.9", "203.0.113.8"},
		{"untrusted peer: XFF ignored", []string{"10.0.0.0/8"}, nil, "198.51.100.1:80", "203.0.113.7", "198.51.100.1"},
		{"no trusted proxies", nil, nil, "10.1.2.3:80", "203.0.113.7", "10.1.2.3"},
		{"forwarded IPv6 by /64", []string{"10.0.0.0/8"}, nil, "10.1.2.3:80", "2001:db8:1:2::99", "2001:db8:1:2::/64"},
		{"WithIPResolver overrides Gin", []string{"10.0.0.0/8"}, []middleware.Option{middleware.WithIPResolver(&middleware.IPResolver{})}, "10.1.2.3:80", "203.0.113.7", "10.1.2.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			opts := append([]middleware.Option{middleware.WithObserver(func(e middleware.Event) { got = append(got, e.Keys...) })}, tc.opts...)
			l := middleware.PerIP(1, time.Minute, opts...)
			t.Cleanup(func() { l.Close() })
			r := gin.New()
			if err := r.SetTrustedProxies(tc.trusted); err != nil {
				t.Fatal(err)
			}
			r.Use(ginlimit.Middleware(l))
			r.GET("/", func(c *gin.Context) { c.Status(http.StatusOK) })
			codes := ""
			for range 2 {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.RemoteAddr = tc.peer
				req.Header.Set("X-Forwarded-For", tc.xff)
				rec := httptest.NewRecorder()
				r.ServeHTTP(rec, req)
				codes += strconv.Itoa(rec.Code) + " "
			}
			if codes != "200 429 " || len(got) != 2 || got[0] != tc.want || got[1] != tc.want {
				t.Fatalf("statuses %s keys %v, want 200 429 and key %s twice", codes, got, tc.want)
			}
		})
	}
}

// TestOneLiners: the Gin one-liners limit by client IP and by header on a
// memory store of their own.
func TestOneLiners(t *testing.T) {
	t.Parallel()
	store := memstore.New(memstore.Options{})
	t.Cleanup(func() { store.Close() })
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	ok := func(c *gin.Context) { c.Status(http.StatusOK) }
	r.GET("/ip", ginlimit.PerIP(2, time.Minute, middleware.WithStore(store)), ok)
	r.GET("/key", ginlimit.PerHeader("X-API-Key", 1, time.Minute, middleware.WithStore(store)), ok)
	r.GET("/tenant", ginlimit.PerKey(middleware.Query("tenant"), 1, time.Minute, middleware.WithStore(store)), ok)
	var codes []int
	for _, tc := range []struct{ path, key string }{
		{"/ip", ""}, {"/ip", ""}, {"/ip", ""},
		{"/key", "a"}, {"/key", "a"}, {"/key", "b"},
		{"/tenant?tenant=x", ""}, {"/tenant?tenant=x", ""}, {"/tenant?tenant=y", ""},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.RemoteAddr = "192.0.2.1:1"
		if tc.key != "" {
			req.Header.Set("X-API-Key", tc.key)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		codes = append(codes, rec.Code)
	}
	if fmt.Sprint(codes) != "[200 200 429 200 429 200 200 429 200]" {
		t.Fatalf("statuses %v", codes)
	}
}
