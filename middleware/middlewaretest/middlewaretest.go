// Package middlewaretest is the behaviour table that every adapter of
// middleware.Limiter (net/http, Gin) must pass.
package middlewaretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
)

// Wrap puts l in front of h the way one adapter does.
type Wrap func(t *testing.T, l *middleware.Limiter, h http.Handler) http.Handler

// Store is a hand-written limiter.Store fake: each function field, when
// set, replaces the wrapped store's method.
type Store struct {
	limiter.Store
	AllowFunc func(ctx context.Context, p *limiter.Policy, key string, cost int64) (limiter.Decision, error)
}

// Allow implements limiter.Store.
func (s *Store) Allow(ctx context.Context, p *limiter.Policy, key string, cost int64) (limiter.Decision, error) {
	if s.AllowFunc != nil {
		return s.AllowFunc(ctx, p, key, cost)
	}
	return s.Store.Allow(ctx, p, key, cost)
}

func policy(t *testing.T, name string, limit int64, window time.Duration) *limiter.Policy {
	t.Helper()
	p := &limiter.Policy{Name: name, Limit: limit, Window: window}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func newStore(t *testing.T) *memstore.Store {
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { s.Close() })
	return s
}

func mustNew(t *testing.T, s limiter.Store, rules []middleware.Rule, opts ...middleware.Option) *middleware.Limiter {
	t.Helper()
	l, err := middleware.New(s, rules, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// handler counts the requests that reach it.
type handler struct{ hits atomic.Int64 }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.hits.Add(1)
	_, _ = io.WriteString(w, "ok")
}

// RateLimitHeaders are the parsed rate-limit headers of a response.
type RateLimitHeaders struct {
	Policy           string
	Quota, Window    int64
	Remaining, Reset int64
	XLimit, XRemain  int64
	XReset           int64
}

// ParseHeaders parses the rate-limit headers with a Structured Fields parser
// and fails the test when they are malformed or disagree.
func ParseHeaders(t testing.TB, h http.Header) RateLimitHeaders {
	t.Helper()
	var out RateLimitHeaders
	pol, err := httpsfv.UnmarshalList(h.Values("RateLimit-Policy"))
	if err != nil || len(pol) != 1 {
		t.Fatalf("RateLimit-Policy %q: %v (%d members)", h.Values("RateLimit-Policy"), err, len(pol))
	}
	item := pol[0].(httpsfv.Item)
	out.Policy, _ = item.Value.(string)
	q, _ := item.Params.Get("q")
	w, _ := item.Params.Get("w")
	out.Quota, _ = q.(int64)
	out.Window, _ = w.(int64)
	rl, err := httpsfv.UnmarshalList(h.Values("RateLimit"))
	if err != nil || len(rl) != 1 {
		t.Fatalf("RateLimit %q: %v", h.Values("RateLimit"), err)
	}
	item = rl[0].(httpsfv.Item)
	if name, _ := item.Value.(string); name != out.Policy {
		t.Fatalf("RateLimit names %q, RateLimit-Policy %q", name, out.Policy)
	}
	r, okR := item.Params.Get("r")
	tt, okT := item.Params.Get("t")
	if !okR || !okT {
		t.Fatalf("RateLimit %q lacks r or t", h.Get("RateLimit"))
	}
	out.Remaining, out.Reset = r.(int64), tt.(int64)
	for name, dst := range map[string]*int64{"X-RateLimit-Limit": &out.XLimit, "X-RateLimit-Remaining": &out.XRemain, "X-RateLimit-Reset": &out.XReset} {
		v, err := strconv.ParseInt(h.Get(name), 10, 64)
		if err != nil {
			t.Fatalf("%s %q: %v", name, h.Get(name), err)
		}
		*dst = v
	}
	if out.XLimit != out.Quota || out.XRemain != out.Remaining || out.XReset != out.Reset {
		t.Fatalf("X-RateLimit-* %+v disagree with RateLimit", out)
	}
	return out
}

func get(t *testing.T, srv http.Handler, path string, mod func(*http.Request)) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = "192.0.2.10:1234"
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec.Result()
}

// Run runs the behaviour table against one adapter.
func Run(t *testing.T, wrap Wrap) {
	t.Run("ExactUnderConcurrency", func(t *testing.T) { testExact(t, wrap) })
	t.Run("Headers", func(t *testing.T) { testHeaders(t, wrap) })
	t.Run("Rejection", func(t *testing.T) { testRejection(t, wrap) })
	t.Run("SeveralPolicies", func(t *testing.T) { testSeveral(t, wrap) })
	t.Run("Shadow", func(t *testing.T) { testShadow(t, wrap) })
	t.Run("StoreFailure", func(t *testing.T) { testStoreFailure(t, wrap) })
	t.Run("Skip", func(t *testing.T) { testSkip(t, wrap) })
	t.Run("KeySources", func(t *testing.T) { testKeySources(t, wrap) })
	t.Run("KeySpaces", func(t *testing.T) { testKeySpaces(t, wrap) })
	t.Run("Cost", func(t *testing.T) { testCost(t, wrap) })
	t.Run("CountStatus", func(t *testing.T) { testCountStatus(t, wrap) })
	t.Run("AmbiguousKeys", func(t *testing.T) { testAmbiguousKeys(t, wrap) })
	t.Run("CustomReject", func(t *testing.T) { testCustomReject(t, wrap) })
	t.Run("ContextReachesStore", func(t *testing.T) { testContext(t, wrap) })
	t.Run("OneLiners", func(t *testing.T) { testOneLiners(t, wrap) })
}

// testOneLiners: PerIP and PerHeader on their own memory stores, through
// the adapter, count per client and answer with their default names.
func testOneLiners(t *testing.T, wrap Wrap) {
	perIP := middleware.PerIP(2, time.Minute)
	perKey := middleware.PerHeader("X-API-Key", 1, time.Minute)
	t.Cleanup(func() { perIP.Close(); perKey.Close() })
	h := &handler{}
	ipSrv, keySrv := wrap(t, perIP, h), wrap(t, perKey, h)
	from := func(addr string) func(*http.Request) { return func(r *http.Request) { r.RemoteAddr = addr } }
	withKey := func(k string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-API-Key", k) } }
	var got []string
	for _, step := range []struct {
		srv http.Handler
		mod func(*http.Request)
	}{
		{ipSrv, nil}, {ipSrv, nil}, {ipSrv, nil}, {ipSrv, from("192.0.2.11:1")},
		{keySrv, withKey("a")}, {keySrv, withKey("a")}, {keySrv, withKey("b")},
	} {
		resp := get(t, step.srv, "/", step.mod)
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("RateLimit-Policy")))
	}
	want := `[200 "per-ip";q=2;w=60 200 "per-ip";q=2;w=60 429 "per-ip";q=2;w=60 200 "per-ip";q=2;w=60 ` +
		`200 "per-x-api-key";q=1;w=60 429 "per-x-api-key";q=1;w=60 200 "per-x-api-key";q=1;w=60]`
	if fmt.Sprint(got) != want {
		t.Fatalf("got  %v\nwant %s", got, want)
	}
	if h.hits.Load() != 5 {
		t.Fatalf("handler reached %d times, want 5", h.hits.Load())
	}
}

func testExact(t *testing.T, wrap Wrap) {
	const limit, clients, each = 50, 32, 5
	h := &handler{}
	l := mustNew(t, newStore(t), []middleware.Rule{{Policy: policy(t, "exact", limit, time.Hour)}})
	srv := httptest.NewServer(wrap(t, l, h))
	defer srv.Close()
	var ok, rejected atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				resp, err := srv.Client().Get(srv.URL + "/x")
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					rejected.Add(1)
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != limit || rejected.Load() != clients*each-limit || h.hits.Load() != limit {
		t.Fatalf("ok %d rejected %d handler %d; want %d, %d, %d", ok.Load(), rejected.Load(), h.hits.Load(), limit, clients*each-limit, limit)
	}
}

func testHeaders(t *testing.T, wrap Wrap) {
	l := mustNew(t, newStore(t), []middleware.Rule{{Policy: policy(t, "per-ip", 3, time.Minute)}})
	srv := wrap(t, l, &handler{})
	for i := range int64(3) {
		resp := get(t, srv, "/", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i+1, resp.StatusCode)
		}
		got := ParseHeaders(t, resp.Header)
		if got.Policy != "per-ip" || got.Quota != 3 || got.Window != 60 || got.Remaining != 2-i {
			t.Fatalf("request %d: headers %+v, want per-ip q=3 w=60 r=%d", i+1, got, 2-i)
		}
		if got.Reset < 1 || got.Reset > 66 {
			t.Fatalf("request %d: reset %d, want 1..66 seconds", i+1, got.Reset)
		}
	}
}

func testRejection(t *testing.T, wrap Wrap) {
	h := &handler{}
	l := mustNew(t, newStore(t), []middleware.Rule{{Policy: policy(t, "per-ip", 1, time.Minute)}})
	srv := wrap(t, l, h)
	get(t, srv, "/", nil)
	resp := get(t, srv, "/", nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	if h.hits.Load() != 1 {
		t.Fatalf("handler reached %d times, want 1", h.hits.Load())
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store", cc)
	}
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 66 {
		t.Fatalf("Retry-After %q, want whole seconds in 1..66", resp.Header.Get("Retry-After"))
	}
	var body struct {
		Error      string `json:"error"`
		Policy     string `json:"policy"`
		RetryAfter int    `json:"retry_after_seconds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Error != "rate limit exceeded" || body.Policy != "per-ip" || body.RetryAfter != retry {
		t.Fatalf("body %+v, want rate limit exceeded / per-ip / %d", body, retry)
	}
	got := ParseHeaders(t, resp.Header)
	if got.Remaining != 0 || got.Reset != int64(retry) {
		t.Fatalf("headers %+v, want r=0 and t=%d", got, retry)
	}
}

func testSeveral(t *testing.T, wrap Wrap) {
	s := newStore(t)
	wide := policy(t, "wide", 10, time.Hour)
	narrow := policy(t, "narrow", 2, time.Minute)
	l := mustNew(t, s, []middleware.Rule{{Policy: wide}, {Policy: narrow}})
	srv := wrap(t, l, &handler{})
	resp := get(t, srv, "/", nil)
	if got := ParseHeaders(t, resp.Header); got.Policy != "narrow" || got.Remaining != 1 {
		t.Fatalf("headers %+v, want the most restrictive policy, narrow, with 1 remaining", got)
	}
	get(t, srv, "/", nil)
	for range 3 {
		if resp := get(t, srv, "/", nil); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429", resp.StatusCode)
		}
	}
	u, err := s.Peek(context.Background(), wide, "192.0.2.10")
	if err != nil || u.Count != 2 {
		t.Fatalf("wide count %d (%v), want 2: requests rejected by narrow must not consume wide", u.Count, err)
	}
}

func testShadow(t *testing.T, wrap Wrap) {
	p := policy(t, "dry", 1, time.Minute)
	p.Shadow = true
	var mu sync.Mutex
	var labels []string
	h := &handler{}
	l := mustNew(t, newStore(t), []middleware.Rule{{Policy: p}}, middleware.WithObserver(func(e middleware.Event) {
		mu.Lock()
		labels = append(labels, e.Decisions...)
		mu.Unlock()
	}))
	srv := wrap(t, l, h)
	for range 3 {
		if resp := get(t, srv, "/", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("shadow policy: status %d, want 200", resp.StatusCode)
		}
	}
	if h.hits.Load() != 3 {
		t.Fatalf("handler reached %d times, want 3", h.hits.Load())
	}
	if fmt.Sprint(labels) != "[allowed shadow_rejected shadow_rejected]" {
		t.Fatalf("observed %v", labels)
	}
}

func testStoreFailure(t *testing.T, wrap Wrap) {
	boom := errors.New("store down")
	failing := &Store{Store: newStore(t), AllowFunc: func(context.Context, *limiter.Policy, string, int64) (limiter.Decision, error) {
		return limiter.Decision{}, boom
	}}
	hanging := &Store{Store: newStore(t), AllowFunc: func(ctx context.Context, _ *limiter.Policy, _ string, _ int64) (limiter.Decision, error) {
		<-ctx.Done()
		return limiter.Decision{}, ctx.Err()
	}}
	for _, tc := range []struct {
		name    string
		store   limiter.Store
		onError middleware.ErrorHandler
		want    int
	}{
		{"error/open", failing, middleware.FailOpen, http.StatusOK},
		{"error/closed", failing, middleware.FailClosed, http.StatusServiceUnavailable},
		{"hang/open", hanging, middleware.FailOpen, http.StatusOK},
		{"hang/closed", hanging, middleware.FailClosed, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var observed error
			l := mustNew(t, tc.store, []middleware.Rule{{Policy: policy(t, "p", 5, time.Minute)}},
				middleware.WithErrorHandler(tc.onError), middleware.WithTimeout(50*time.Millisecond),
				middleware.WithObserver(func(e middleware.Event) { observed = e.Err }))
			start := time.Now()
			resp := get(t, wrap(t, l, &handler{}), "/", nil)
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("took %v with a 50ms timeout", took)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if observed == nil {
				t.Fatal("observer was not told of the error")
			}
			if tc.want == http.StatusServiceUnavailable {
				var body map[string]string
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] == "" {
					t.Fatalf("503 body: %v %v", body, err)
				}
			}
		})
	}
}

func testSkip(t *testing.T, wrap Wrap) {
	h := &handler{}
	l := mustNew(t, newStore(t), []middleware.Rule{{Policy: policy(t, "p", 1, time.Minute)}},
		middleware.WithSkip(func(r *http.Request) bool { return r.URL.Path == "/healthz" }))
	srv := wrap(t, l, h)
	for range 5 {
		if resp := get(t, srv, "/healthz", nil); resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit") != "" {
			t.Fatalf("skipped path: status %d headers %v", resp.StatusCode, resp.Header)
		}
	}
	if resp := get(t, srv, "/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first limited request: %d", resp.StatusCode)
	}
}

func testKeySources(t *testing.T, wrap Wrap) {
	s := newStore(t)
	byKey := policy(t, "by-key", 1, time.Minute)
	strict := policy(t, "strict", 1, time.Minute)
	l := mustNew(t, s, []middleware.Rule{
		{Policy: byKey, Keys: []middleware.KeySource{middleware.Header("X-API-Key"), middleware.Query("key"), middleware.Cookie("key")}},
	})
	srv := wrap(t, l, &handler{})
	withHeader := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-API-Key", v) } }
	if get(t, srv, "/", withHeader("a")).StatusCode != 200 || get(t, srv, "/", withHeader("b")).StatusCode != 200 {
		t.Fatal("two API keys share a bucket")
	}
	if get(t, srv, "/", withHeader("a")).StatusCode != 429 {
		t.Fatal("same API key not limited")
	}
	// Each source has its key space: query key a is not header key a.
	if get(t, srv, "/?key=a", nil).StatusCode != 200 || get(t, srv, "/?key=a", nil).StatusCode != 429 {
		t.Fatal("query key a shares a bucket with header key a, or is not limited")
	}
	cookie := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "key", Value: "c"}) }
	if get(t, srv, "/", cookie).StatusCode != 200 || get(t, srv, "/", cookie).StatusCode != 429 {
		t.Fatal("cookie key not used")
	}
	// No source present: the client IP.
	if get(t, srv, "/", nil).StatusCode != 200 || get(t, srv, "/", nil).StatusCode != 429 {
		t.Fatal("missing key did not fall back to the IP")
	}
	if u, _ := s.Peek(context.Background(), byKey, "192.0.2.10"); u.Count != 1 {
		t.Fatalf("IP fallback count %d, want 1", u.Count)
	}
	rej := mustNew(t, s, []middleware.Rule{{Policy: strict, Keys: []middleware.KeySource{middleware.Header("X-API-Key")}, OnMissingKey: middleware.MissingKeyReject}})
	h := &handler{}
	resp := get(t, wrap(t, rej, h), "/", nil)
	if resp.StatusCode != http.StatusBadRequest || h.hits.Load() != 0 {
		t.Fatalf("missing key with reject: status %d, handler %d; want 400 and 0", resp.StatusCode, h.hits.Load())
	}
}

// testKeySpaces: the stored key carries its source, so a header whose
// value is a client's IP address never spends that client's per-IP quota
// (nor the client its quota), and header, query and cookie keys with the
// same value are three keys.
func testKeySpaces(t *testing.T, wrap Wrap) {
	s := newStore(t)
	p := policy(t, "spaces", 1, time.Minute)
	l := mustNew(t, s, []middleware.Rule{
		{Policy: p, Keys: []middleware.KeySource{middleware.Header("X-API-Key"), middleware.Query("key"), middleware.Cookie("key"), middleware.IP(&middleware.IPResolver{})}},
	})
	srv := wrap(t, l, &handler{})
	header := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-API-Key", v) } }
	cookie := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "key", Value: v}) }
	}
	for _, tc := range []struct {
		name, path string
		mod        func(*http.Request)
	}{
		{"header holding the client's IP", "/", header("192.0.2.10")},
		{"the client's IP", "/", nil},
		{"query holding the client's IP", "/?key=192.0.2.10", nil},
		{"header k1", "/", header("k1")},
		{"query k1", "/?key=k1", nil},
		{"cookie k1", "/", cookie("k1")},
		{"header with a separator", "/", header("k1|query:key:k1")},
	} {
		if resp := get(t, srv, tc.path, tc.mod); resp.StatusCode != 200 {
			t.Fatalf("%s: %d, want 200 (its key space is its own)", tc.name, resp.StatusCode)
		}
		if resp := get(t, srv, tc.path, tc.mod); resp.StatusCode != 429 {
			t.Fatalf("%s again: %d, want 429", tc.name, resp.StatusCode)
		}
	}
	for k, want := range map[string]int64{"192.0.2.10": 1, "header:x-api-key:192.0.2.10": 1, "query:key:192.0.2.10": 1,
		"header:x-api-key:k1": 1, "query:key:k1": 1, "cookie:key:k1": 1, "header:x-api-key:k1%7Cquery:key:k1": 1} {
		if u, _ := s.Peek(context.Background(), p, k); u.Count != want {
			t.Errorf("key %q counted %d, want %d", k, u.Count, want)
		}
	}
}

// testCost: a request costs what WithCost says, the headers count in the
// same units, a request that does not fit is rejected with its cost in the
// 429 body, and a bad cost is 400 and charges nothing.
func testCost(t *testing.T, wrap Wrap) {
	s := newStore(t)
	p := policy(t, "costly", 10, time.Minute)
	h := &handler{}
	srv := wrap(t, mustNew(t, s, []middleware.Rule{{Policy: p}}, middleware.WithCost(middleware.HeaderCost("X-Cost", 3, 1, 5))), h)
	cost := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-Cost", v) } }
	steps := []struct {
		mod       func(*http.Request)
		status    int
		remaining int64
	}{
		{nil, 200, 7},        // the default cost, 3
		{cost("5"), 200, 2},  // 8 of 10
		{cost("3"), 429, 2},  // 11 would be over
		{cost("2"), 200, 0},  // exactly 10
		{cost("1"), 429, 0},  //
		{cost("0"), 400, -1}, // below min
		{cost("6"), 400, -1}, // above max
		{cost("-2"), 400, -1},
		{cost("1.5"), 400, -1},
		{func(r *http.Request) { r.Header.Add("X-Cost", "1"); r.Header.Add("X-Cost", "1") }, 400, -1},
	}
	for i, st := range steps {
		resp := get(t, srv, "/", st.mod)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != st.status {
			t.Fatalf("step %d: status %d %s, want %d", i, resp.StatusCode, body, st.status)
		}
		if st.remaining >= 0 {
			if hd := ParseHeaders(t, resp.Header); hd.Remaining != st.remaining || hd.Quota != 10 {
				t.Fatalf("step %d: remaining %d of %d, want %d of 10", i, hd.Remaining, hd.Quota, st.remaining)
			}
		}
		if st.status == 429 && !strings.Contains(string(body), `"cost":`) && !strings.Contains(string(body), `"retry_after_seconds"`) {
			t.Fatalf("step %d: 429 body %s", i, body)
		}
		if i == 2 && !strings.HasSuffix(strings.TrimSpace(string(body)), `,"cost":3}`) {
			t.Fatalf("429 body %s, want the cost 3", body)
		}
		if st.status == 400 && !strings.Contains(string(body), "X-Cost must be a whole number from 1 to 5") && !strings.Contains(string(body), "more than once") {
			t.Fatalf("step %d: 400 body %s", i, body)
		}
	}
	if u, _ := s.Peek(context.Background(), p, "192.0.2.10"); u.Count != 10 || u.Rejected != 2 {
		t.Fatalf("count %d rejected %d, want 10 and 2", u.Count, u.Rejected)
	}
	if n := h.hits.Load(); n != 3 {
		t.Fatalf("handler ran %d times, want 3", n)
	}
}

// testCountStatus: the login brute-force case. 5 failed logins (401) per
// 10 minutes; successes are refunded, so they never use the quota, but once
// 5 failures are counted even a correct password is refused until the
// window moves on.
func testCountStatus(t *testing.T, wrap Wrap) {
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	s := memstore.New(memstore.Options{Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	t.Cleanup(func() { s.Close() })
	p := &limiter.Policy{Name: "logins", Algorithm: limiter.FixedWindow, Limit: 5, Window: 10 * time.Minute}
	failed, err := middleware.Statuses("401")
	if err != nil {
		t.Fatal(err)
	}
	l := mustNew(t, s, []middleware.Rule{{Policy: p, CountStatus: failed}})
	var hits atomic.Int64
	srv := wrap(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Query().Get("password") != "right" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "welcome")
	}))
	login := func(pw string) int { return get(t, srv, "/login?password="+pw, nil).StatusCode }
	count := func() int64 {
		u, err := s.Peek(context.Background(), p, "192.0.2.10")
		if err != nil {
			t.Fatal(err)
		}
		return u.Count
	}
	for i := range 20 {
		if got := login("right"); got != 200 {
			t.Fatalf("success %d: %d, want 200 (successes are free)", i, got)
		}
	}
	if c := count(); c != 0 {
		t.Fatalf("after 20 successes the count is %d, want 0", c)
	}
	for i := range 5 {
		if got := login("wrong"); got != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, got)
		}
		if got := login("right"); got != 200 && i < 4 {
			t.Fatalf("success after %d failures: %d, want 200", i+1, got)
		}
	}
	if c := count(); c != 5 {
		t.Fatalf("after 5 failures the count is %d, want 5", c)
	}
	for _, pw := range []string{"wrong", "right"} {
		if got := login(pw); got != 429 {
			t.Fatalf("password %s after 5 failures: %d, want 429", pw, got)
		}
	}
	if n := hits.Load(); n != 29 {
		t.Fatalf("the handler ran %d times, want 29", n)
	}
	mu.Lock()
	clock = clock.Add(10 * time.Minute)
	mu.Unlock()
	if got := login("right"); got != 200 {
		t.Fatalf("next window: %d, want 200", got)
	}
	if c := count(); c != 0 {
		t.Fatalf("next window after a success: count %d, want 0", c)
	}
	// Beside a policy that counts everything, only the counting-by-status
	// one is refunded.
	errs, _ := middleware.Statuses("5xx")
	all := &limiter.Policy{Name: "all", Limit: 100, Window: time.Minute}
	fails := &limiter.Policy{Name: "upstream-errors", Limit: 100, Window: time.Minute}
	two := wrap(t, mustNew(t, s, []middleware.Rule{{Policy: all}, {Policy: fails, CountStatus: errs}}),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/fail" {
				w.WriteHeader(http.StatusBadGateway)
			}
		}))
	for _, path := range []string{"/ok", "/fail", "/ok", "/fail", "/fail"} {
		get(t, two, path, nil)
	}
	for p, want := range map[*limiter.Policy]int64{all: 5, fails: 3} {
		if u, _ := s.Peek(context.Background(), p, "192.0.2.10"); u.Count != want {
			t.Fatalf("policy %s counted %d, want %d", p.Name, u.Count, want)
		}
	}
	// Classes and bad specs.
	m, err := middleware.Statuses("5xx", "429")
	if err != nil || !m(500) || !m(503) || !m(429) || m(200) || m(404) || m(600) {
		t.Fatalf("Statuses(5xx, 429): %v", err)
	}
	for _, bad := range [][]string{nil, {"6xx"}, {"99"}, {"abc"}, {"4x"}} {
		if _, err := middleware.Statuses(bad...); err == nil {
			t.Fatalf("Statuses(%q): no error", bad)
		}
	}
}

// testAmbiguousKeys: a key source present more than once (a repeated
// header, query parameter or cookie, or a query string that does not parse)
// is answered 400, reaches neither the handler nor the store, and does not
// fall back to the next source or the client IP; one copy is counted.
func testAmbiguousKeys(t *testing.T, wrap Wrap) {
	s := newStore(t)
	byKey := policy(t, "by-key", 5, time.Minute)
	l := mustNew(t, s, []middleware.Rule{
		{Policy: byKey, Keys: []middleware.KeySource{middleware.Header("X-API-Key"), middleware.Query("key"), middleware.Cookie("key")}},
	})
	h := &handler{}
	srv := wrap(t, l, h)
	for _, tc := range []struct {
		name, path string
		mod        func(*http.Request)
	}{
		{"header twice", "/", func(r *http.Request) { r.Header.Add("X-API-Key", "a"); r.Header.Add("X-API-Key", "b") }},
		{"header twice, the first empty", "/", func(r *http.Request) { r.Header.Add("X-API-Key", ""); r.Header.Add("X-API-Key", "b") }},
		{"header twice, the same value", "/", func(r *http.Request) { r.Header.Add("X-API-Key", "a"); r.Header.Add("X-API-Key", "a") }},
		{"header beside its underscore spelling", "/", func(r *http.Request) { r.Header.Add("X-API-Key", "a"); r.Header["X_api_key"] = []string{"b"} }},
		{"query twice", "/?key=a&key=b", nil},
		{"query with a semicolon", "/?key=a;key=b", nil},
		{"query with a bad escape", "/?key=a&x=%zz", nil},
		{"cookie twice in one header", "/", func(r *http.Request) { r.Header.Set("Cookie", "key=a; key=b") }},
		{"cookie in two headers", "/", func(r *http.Request) { r.Header.Add("Cookie", "key=a"); r.Header.Add("Cookie", "key=b") }},
	} {
		resp := get(t, srv, tc.path, tc.mod)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "ambiguous") {
			t.Errorf("%s: %d %s, want 400 naming the ambiguous key", tc.name, resp.StatusCode, body)
		}
	}
	if n := h.hits.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for ambiguous keys, want 0", n)
	}
	for _, k := range []string{"a", "b", "header:x-api-key:a", "header:x-api-key:b", "query:key:a", "query:key:b", "cookie:key:a", "cookie:key:b", "192.0.2.10"} {
		if u, _ := s.Peek(context.Background(), byKey, k); u.Count != 0 {
			t.Fatalf("key %q counted %d times, want 0", k, u.Count)
		}
	}
	// One copy of each source is fine, and sources still fall back in order.
	for _, path := range []string{"/?key=a&other=1&other=2", "/?key=a"} {
		if resp := get(t, srv, path, nil); resp.StatusCode != 200 {
			t.Fatalf("%s: %d, want 200", path, resp.StatusCode)
		}
	}
	if resp := get(t, srv, "/", func(r *http.Request) { r.Header.Set("Cookie", "key=a; other=1") }); resp.StatusCode != 200 {
		t.Fatalf("one cookie: %d, want 200", resp.StatusCode)
	}
	if u, _ := s.Peek(context.Background(), byKey, "query:key:a"); u.Count != 2 {
		t.Fatalf("query key a counted %d times, want 2", u.Count)
	}
	if u, _ := s.Peek(context.Background(), byKey, "cookie:key:a"); u.Count != 1 {
		t.Fatalf("cookie key a counted %d times, want 1", u.Count)
	}
}

func testCustomReject(t *testing.T, wrap Wrap) {
	l := mustNew(t, newStore(t), []middleware.Rule{{Policy: policy(t, "p", 1, time.Minute)}},
		middleware.WithRejectHandler(func(w http.ResponseWriter, r *http.Request, rej middleware.Rejection) {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "slow down (%s)", rej.Policy)
		}))
	srv := wrap(t, l, &handler{})
	get(t, srv, "/", nil)
	resp := get(t, srv, "/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "slow down (p)" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("custom reject: %d %q Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
}

type ctxKey struct{}

func testContext(t *testing.T, wrap Wrap) {
	var seen atomic.Value
	s := &Store{Store: newStore(t)}
	s.AllowFunc = func(ctx context.Context, p *limiter.Policy, key string, cost int64) (limiter.Decision, error) {
		if v, ok := ctx.Value(ctxKey{}).(string); ok {
			seen.Store(v)
		}
		return s.Store.Allow(ctx, p, key, cost)
	}
	l := mustNew(t, s, []middleware.Rule{{Policy: policy(t, "p", 5, time.Minute)}})
	get(t, wrap(t, l, &handler{}), "/", func(r *http.Request) {
		*r = *r.WithContext(context.WithValue(r.Context(), ctxKey{}, "marker"))
	})
	if seen.Load() != "marker" {
		t.Fatal("the request's context did not reach the store")
	}
}

// Discard is a ResponseWriter that keeps only its header map, for
// benchmarks that should measure the handler rather than a recorder.
type Discard struct{ H http.Header }

// Header implements http.ResponseWriter.
func (d *Discard) Header() http.Header { return d.H }

// Write implements http.ResponseWriter.
func (d *Discard) Write(b []byte) (int, error) { return len(b), nil }

// WriteHeader implements http.ResponseWriter.
func (d *Discard) WriteHeader(int) {}
