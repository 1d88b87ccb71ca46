package rls_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/rls"
)

// clock is a manual clock for the memory store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func policy(name string, limit int64, window time.Duration, shadow bool) *limiter.Policy {
	return &limiter.Policy{Name: name, Limit: limit, Window: window, Shadow: shadow}
}

// fixture is a Server on a loopback port with a real gRPC client.
type fixture struct {
	client   rlsv3.RateLimitServiceClient
	store    limiter.Store
	clock    *clock
	events   chan middleware.Event
	failOpen atomic.Bool
}

func start(t testing.TB, store limiter.Store, domains ...rls.Domain) *fixture {
	t.Helper()
	table, err := rls.NewTable(domains)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, events: make(chan middleware.Event, 1<<16)}
	f.failOpen.Store(true)
	if store == nil {
		f.clock = &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		ms := memstore.New(memstore.Options{Clock: f.clock.Now, SweepInterval: -1})
		t.Cleanup(func() { ms.Close() })
		f.store = ms
	}
	srv := grpc.NewServer()
	rls.NewServer(func() rls.Snapshot {
		return rls.Snapshot{Table: table, Store: f.store, FailOpen: f.failOpen.Load()}
	}, rls.WithObserver(func(e middleware.Event) {
		select {
		case f.events <- e:
		default:
		}
	})).Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.client = rlsv3.NewRateLimitServiceClient(conn)
	return f
}

// desc builds a descriptor from key, value pairs.
func desc(kv ...string) *commonv3.RateLimitDescriptor {
	d := &commonv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func (f *fixture) call(t testing.TB, domain string, hits uint32, ds ...*commonv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := f.client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds, HitsAddend: hits})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

func usage(t testing.TB, s limiter.Store, p *limiter.Policy, key string) limiter.Usage {
	t.Helper()
	u, err := s.Peek(context.Background(), p, key)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
)

func TestConcurrentAdmissionAtTheLimit(t *testing.T) {
	t.Parallel()
	perIP := policy("per-ip", 100, time.Hour, false)
	f := start(t, nil, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{{Key: "remote_address", Policy: perIP}}})
	const callers, each = 50, 5
	var admitted, limited, other atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				resp, err := f.client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonv3.RateLimitDescriptor{desc("remote_address", "203.0.113.7")}})
				switch {
				case err != nil:
					other.Add(1)
				case resp.OverallCode == ok:
					admitted.Add(1)
				case resp.OverallCode == over && resp.Statuses[0].Code == over:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 100 || limited.Load() != callers*each-100 || other.Load() != 0 {
		t.Fatalf("admitted %d, limited %d, other %d; want 100, %d, 0", admitted.Load(), limited.Load(), callers*each-100, other.Load())
	}
	if u := usage(t, f.store, perIP, "203.0.113.7"); u.Count != 100 || u.Rejected != callers*each-100 {
		t.Fatalf("usage %+v", u)
	}
}

func TestSeveralDescriptorsInOneCall(t *testing.T) {
	t.Parallel()
	perIP := policy("per-ip", 5, time.Minute, false)
	perUser := policy("per-user", 2, 10*time.Second, false)
	f := start(t, nil, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{
		{Key: "remote_address", Policy: perIP},
		{Key: "user", Policy: perUser},
	}})
	ip, user := desc("remote_address", "198.51.100.1"), desc("user", "alice")
	for n := range 2 {
		resp := f.call(t, "edge", 0, ip, user)
		if resp.OverallCode != ok || resp.Statuses[0].Code != ok || resp.Statuses[1].Code != ok {
			t.Fatalf("call %d: %v", n, resp)
		}
		if got := resp.Statuses[1].LimitRemaining; got != uint32(1-n) {
			t.Fatalf("call %d: user remaining %d", n, got)
		}
	}
	f.clock.Add(time.Second)
	resp := f.call(t, "edge", 0, ip, user)
	if resp.OverallCode != over || resp.Statuses[0].Code != ok || resp.Statuses[1].Code != over {
		t.Fatalf("third call: %v", resp)
	}
	st := resp.Statuses[1]
	if st.CurrentLimit.GetName() != "per-user" || st.CurrentLimit.GetRequestsPerUnit() != 2 ||
		st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_UNKNOWN {
		t.Fatalf("current_limit %v", st.CurrentLimit)
	}
	if st.LimitRemaining != 0 {
		t.Fatalf("limit_remaining %d", st.LimitRemaining)
	}
	// The window is 10s, the calls came at 0s and 1s: a request fits again
	// once the first has left the window, 9s to 10s from now.
	if d := st.DurationUntilReset.AsDuration(); d < 8*time.Second || d > 10*time.Second {
		t.Fatalf("duration_until_reset %v", d)
	}
	if h := resp.ResponseHeadersToAdd; len(h) != 1 || h[0].Key != "retry-after" || (h[0].Value != "9" && h[0].Value != "10") {
		t.Fatalf("response_headers_to_add %v", h)
	}
	// The rejected call was refunded under per-ip: it charged two calls.
	if u := usage(t, f.store, perIP, "198.51.100.1"); u.Count != 2 {
		t.Fatalf("per-ip count %d, want 2 (the rejected call refunded)", u.Count)
	}
	ipStatus := resp.Statuses[0]
	if ipStatus.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE || ipStatus.LimitRemaining != 3 {
		t.Fatalf("per-ip status %v, want remaining 3: the refunded call is not counted", ipStatus)
	}
	// Rejecting descriptor first: the other one is not evaluated, but its
	// status still says where it stands.
	resp = f.call(t, "edge", 0, user, ip)
	if resp.OverallCode != over || resp.Statuses[0].Code != over || resp.Statuses[1].Code != ok || resp.Statuses[1].LimitRemaining != 3 {
		t.Fatalf("rejecting first: %v", resp)
	}
	if u := usage(t, f.store, perIP, "198.51.100.1"); u.Count != 2 {
		t.Fatalf("per-ip count %d, want 2", u.Count)
	}
}

func TestUnknownDescriptorsAreOK(t *testing.T) {
	t.Parallel()
	perPath := policy("per-path", 1, time.Minute, false)
	f := start(t, nil, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{
		{Key: "generic_key", Value: "api", Descriptors: []rls.Descriptor{{Key: "path", Policy: perPath}}},
	}})
	for _, tc := range []struct {
		name   string
		domain string
		d      *commonv3.RateLimitDescriptor
	}{
		{"unknown domain", "other", desc("generic_key", "api", "path", "/a")},
		{"unknown key", "edge", desc("header_match", "x")},
		{"unknown value", "edge", desc("generic_key", "web", "path", "/a")},
		{"ends where no policy is", "edge", desc("generic_key", "api")},
		{"longer than the tree", "edge", desc("generic_key", "api", "path", "/a", "user", "u")},
		{"no entries", "edge", desc()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 {
				resp := f.call(t, tc.domain, 0, tc.d)
				if resp.OverallCode != ok || len(resp.Statuses) != 1 || resp.Statuses[0].Code != ok || resp.Statuses[0].CurrentLimit != nil {
					t.Fatalf("%v", resp)
				}
			}
		})
	}
	// An unknown descriptor beside a known one: the known one decides.
	for n, want := range []rlsv3.RateLimitResponse_Code{ok, over} {
		resp := f.call(t, "edge", 0, desc("nope", "x"), desc("generic_key", "api", "path", "/a"))
		if resp.OverallCode != want || resp.Statuses[0].Code != ok || resp.Statuses[1].Code != want {
			t.Fatalf("call %d: %v", n, resp)
		}
	}
	if len(f.events) != 2 {
		t.Fatalf("%d decisions observed, want 2 (unknown descriptors are not decisions)", len(f.events))
	}
}

func TestShadowPoliciesAnswerOK(t *testing.T) {
	t.Parallel()
	shadow := policy("trial", 2, time.Minute, true)
	f := start(t, nil, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{{Key: "user", Policy: shadow}}})
	for n := range 4 {
		resp := f.call(t, "edge", 0, desc("user", "bob"))
		if resp.OverallCode != ok || resp.Statuses[0].Code != ok {
			t.Fatalf("call %d: %v", n, resp)
		}
		if want := uint32(max(1-n, 0)); resp.Statuses[0].LimitRemaining != want {
			t.Fatalf("call %d: remaining %d, want %d", n, resp.Statuses[0].LimitRemaining, want)
		}
	}
	var labels []string
	for len(f.events) > 0 {
		labels = append(labels, (<-f.events).Decisions...)
	}
	want := []string{"allowed", "allowed", "shadow_rejected", "shadow_rejected"}
	if len(labels) != 4 || labels[0] != want[0] || labels[1] != want[1] || labels[2] != want[2] || labels[3] != want[3] {
		t.Fatalf("observed %v, want %v", labels, want)
	}
	if u := usage(t, f.store, shadow, "descriptor:user:bob"); u.Count != 2 || u.Rejected != 2 {
		t.Fatalf("usage %+v", u)
	}
}

func TestHitsAddendIsTheCost(t *testing.T) {
	t.Parallel()
	p := policy("bytes", 10, time.Hour, false)
	f := start(t, nil, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{{Key: "tenant", Policy: p}}})
	resp := f.call(t, "edge", 4, desc("tenant", "t1"))
	if resp.OverallCode != ok || resp.Statuses[0].LimitRemaining != 6 {
		t.Fatalf("4 hits: %v", resp)
	}
	d := desc("tenant", "t1")
	d.HitsAddend = wrapperspb.UInt64(5) // the descriptor's own count wins
	resp = f.call(t, "edge", 4, d)
	if resp.OverallCode != ok || resp.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("5 hits: %v", resp)
	}
	resp = f.call(t, "edge", 2, desc("tenant", "t1"))
	if resp.OverallCode != over || resp.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("2 hits over 1 remaining: %v", resp)
	}
	if u := usage(t, f.store, p, "descriptor:tenant:t1"); u.Count != 9 || u.Rejected != 1 {
		t.Fatalf("usage %+v", u)
	}
	// is_negative_hits is not supported: answered OK, nothing counted.
	neg := desc("tenant", "t1")
	neg.IsNegativeHits = true
	if resp := f.call(t, "edge", 3, neg); resp.OverallCode != ok {
		t.Fatalf("negative hits: %v", resp)
	}
	if u := usage(t, f.store, p, "descriptor:tenant:t1"); u.Count != 9 {
		t.Fatalf("usage after negative hits %+v", u)
	}
}

func TestCurrentLimitUnits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		window time.Duration
		unit   rlsv3.RateLimitResponse_RateLimit_Unit
	}{
		{time.Second, rlsv3.RateLimitResponse_RateLimit_SECOND},
		{time.Minute, rlsv3.RateLimitResponse_RateLimit_MINUTE},
		{time.Hour, rlsv3.RateLimitResponse_RateLimit_HOUR},
		{24 * time.Hour, rlsv3.RateLimitResponse_RateLimit_DAY},
		{90 * time.Second, rlsv3.RateLimitResponse_RateLimit_UNKNOWN},
		{1500 * time.Millisecond, rlsv3.RateLimitResponse_RateLimit_UNKNOWN},
	} {
		p := &limiter.Policy{Name: "p", Limit: 7, Window: tc.window, Overrides: map[string]int64{"descriptor:k:vip": 70}}
		f := start(t, nil, rls.Domain{Name: "d", Descriptors: []rls.Descriptor{{Key: "k", Policy: p}}})
		cl := f.call(t, "d", 0, desc("k", "x")).Statuses[0].CurrentLimit
		if cl.GetUnit() != tc.unit || cl.GetRequestsPerUnit() != 7 || cl.GetName() != "p" {
			t.Errorf("window %v: %v", tc.window, cl)
		}
		if vip := f.call(t, "d", 0, desc("k", "vip")).Statuses[0].CurrentLimit; vip.GetRequestsPerUnit() != 70 {
			t.Errorf("override: %v", vip)
		}
	}
}

func TestBadCalls(t *testing.T) {
	t.Parallel()
	f := start(t, nil, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{{Key: "k", Policy: policy("p", 1, time.Minute, false)}}})
	many := make([]*commonv3.RateLimitDescriptor, rls.MaxDescriptors+1)
	for i := range many {
		many[i] = desc("k", "v")
	}
	for _, tc := range []struct {
		name string
		req  *rlsv3.RateLimitRequest
	}{
		{"no domain", &rlsv3.RateLimitRequest{Descriptors: []*commonv3.RateLimitDescriptor{desc("k", "v")}}},
		{"no descriptors", &rlsv3.RateLimitRequest{Domain: "edge"}},
		{"too many descriptors", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: many}},
	} {
		_, err := f.client.ShouldRateLimit(context.Background(), tc.req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.name, err)
		}
	}
	huge := desc("k", "v")
	huge.HitsAddend = wrapperspb.UInt64(1 << 63)
	if _, err := f.client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonv3.RateLimitDescriptor{huge}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("hits_addend 2^63: %v, want InvalidArgument", err)
	}
}

// failingStore fails every call.
type failingStore struct{ limiter.Store }

var errDown = errors.New("store down")

func (failingStore) Allow(context.Context, *limiter.Policy, string, int64) (limiter.Decision, error) {
	return limiter.Decision{}, errDown
}

func TestStoreOutage(t *testing.T) {
	t.Parallel()
	p := policy("per-ip", 1, time.Minute, false)
	f := start(t, failingStore{}, rls.Domain{Name: "edge", Descriptors: []rls.Descriptor{{Key: "remote_address", Policy: p}}})
	for _, open := range []bool{true, false} {
		f.failOpen.Store(open)
		resp := f.call(t, "edge", 0, desc("remote_address", "192.0.2.1"), desc("unknown", "x"))
		want := ok
		if !open {
			want = over
		}
		if resp.OverallCode != want || resp.Statuses[0].Code != want || resp.Statuses[1].Code != ok {
			t.Fatalf("fail open %v: %v", open, resp)
		}
		e := <-f.events
		if len(e.Decisions) != 1 || e.Decisions[0] != middleware.DecisionError || !errors.Is(e.Err, errDown) || e.Request != nil {
			t.Fatalf("event %+v", e)
		}
	}
}

func TestTableLookup(t *testing.T) {
	t.Parallel()
	a, b, c, d := policy("a", 1, time.Second, false), policy("b", 1, time.Second, false), policy("c", 1, time.Second, false), policy("d", 1, time.Second, false)
	table, err := rls.NewTable([]rls.Domain{{Name: "x", Descriptors: []rls.Descriptor{
		{Key: "remote_address", Policy: a},
		{Key: "path", Value: "/login", Policy: b, Descriptors: []rls.Descriptor{{Key: "remote_address", Policy: c}}},
		{Key: "path", Policy: d, Descriptors: []rls.Descriptor{{Key: "method", Descriptors: []rls.Descriptor{{Key: "user", Policy: c}}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	e := func(kv ...string) []rls.Entry {
		var out []rls.Entry
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, rls.Entry{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		entries []rls.Entry
		policy  *limiter.Policy
		key     string
	}{
		{e("remote_address", "203.0.113.7"), a, "203.0.113.7"},
		{e("remote_address", "::ffff:203.0.113.7"), a, "203.0.113.7"},
		{e("remote_address", "2001:db8:1:2:3:4:5:6"), a, "2001:db8:1:2::/64"},
		{e("remote_address", "not-an-ip"), a, "descriptor:remote_address:not-an-ip"},
		{e("path", "/login"), b, "descriptor:path:/login"},
		{e("path", "/other"), d, "descriptor:path:/other"},
		{e("path", "/login", "remote_address", "10.0.0.1"), c, "10.0.0.1"},
		{e("path", "/x", "method", "GET", "user", "u1"), c, "descriptor:path:/x|descriptor:method:GET|descriptor:user:u1"},
		{e("path", "/x|GET", "method", "u1", "user", ""), c, "descriptor:path:/x%7CGET|descriptor:method:u1|descriptor:user:"},
		{e("path", "100%", "method", "GET", "user", "u"), c, "descriptor:path:100%25|descriptor:method:GET|descriptor:user:u"},
		{e("path", "/x", "method", "GET"), nil, ""},
		{e("path", "/login", "user", "u"), nil, ""},
		{e("remote_address", "1", "path", "/"), nil, ""},
		{nil, nil, ""},
	} {
		p, key, found := table.Lookup("x", tc.entries)
		if p != tc.policy || key != tc.key || found != (tc.policy != nil) {
			t.Errorf("%v: policy %v key %q found %v; want %v %q", tc.entries, p, key, found, tc.policy, tc.key)
		}
	}
	if _, _, found := table.Lookup("y", e("remote_address", "1")); found {
		t.Error("unknown domain found")
	}
	if _, _, found := (*rls.Table)(nil).Lookup("x", e("remote_address", "1")); found {
		t.Error("nil table found")
	}
	_, err = rls.NewTable([]rls.Domain{{Name: "x", Descriptors: []rls.Descriptor{{Key: "k", Policy: a}, {Key: "k", Policy: b}, {Key: "", Policy: b}, {Key: "z", Policy: &limiter.Policy{Name: "bad"}}}}, {Name: "x"}, {}})
	for _, want := range []string{"domain x > k: duplicate", "domain x: a descriptor has no key", `domain x > z: policy "bad": limit: must be > 0`, `domain "x": duplicate`, "a domain has no name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewTable errors %v lack %q", err, want)
		}
	}
}
