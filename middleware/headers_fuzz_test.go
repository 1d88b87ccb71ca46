package middleware

import (
	"net/http"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/sluice-gateway/sluice/limiter"
)

// FuzzRateLimitHeaders renders headers for arbitrary decisions and parses
// them back with a Structured Fields parser.
func FuzzRateLimitHeaders(f *testing.F) {
	f.Add("per-ip", int64(100), int64(99), int64(17_000), int64(0), int64(60_000), true)
	f.Add("a", int64(1), int64(0), int64(0), int64(1), int64(1), false)
	f.Add("x-Y_9", int64(1<<62), int64(-5), int64(-1), int64(1<<40), int64(1<<41), false)
	f.Fuzz(func(t *testing.T, name string, lim, remaining, resetMS, retryMS, windowMS int64, allowed bool) {
		if !limiter.ValidName(name) || lim <= 0 || remaining < 0 || windowMS <= 0 || windowMS > 1<<40 || resetMS > 1<<40 || retryMS > 1<<40 {
			return
		}
		p := &limiter.Policy{Name: name, Limit: lim, Window: time.Duration(windowMS) * time.Millisecond}
		d := limiter.Decision{Allowed: allowed, Limit: lim, Remaining: remaining,
			ResetAfter: time.Duration(resetMS) * time.Millisecond, RetryAfter: time.Duration(retryMS) * time.Millisecond}
		h := http.Header{}
		writeHeaders(h, p, d)
		pol, err := httpsfv.UnmarshalList(h.Values("RateLimit-Policy"))
		if err != nil || len(pol) != 1 {
			t.Fatalf("RateLimit-Policy %q: %v", h.Get("RateLimit-Policy"), err)
		}
		item := pol[0].(httpsfv.Item)
		if item.Value != name {
			t.Fatalf("policy name %v, want %q", item.Value, name)
		}
		if q, _ := item.Params.Get("q"); q != lim {
			t.Fatalf("q=%v, want %d", q, lim)
		}
		rl, err := httpsfv.UnmarshalList(h.Values("RateLimit"))
		if err != nil || len(rl) != 1 {
			t.Fatalf("RateLimit %q: %v", h.Get("RateLimit"), err)
		}
		r, _ := rl[0].(httpsfv.Item).Params.Get("r")
		tt, _ := rl[0].(httpsfv.Item).Params.Get("t")
		if r != remaining || tt.(int64) < 0 {
			t.Fatalf("RateLimit %q for remaining %d", h.Get("RateLimit"), remaining)
		}
		if h.Get("X-RateLimit-Remaining") == "" || h.Get("X-RateLimit-Reset") == "" {
			t.Fatal("X-RateLimit-* missing")
		}
	})
}
