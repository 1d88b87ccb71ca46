package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/internal/faultproxy"
	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
	"github.com/sluice-gateway/sluice/limiter/topk"
)

// flushFault breaks the Redis of a store's busiest-key flushes and heals it.
type flushFault struct {
	name string
	// start returns the options of a store on a Redis of the test's own
	// (or behind a proxy of its own), and the fault's break and heal; or
	// the client to build the store on, when not nil.
	start func(t *testing.T) (c redis.UniversalClient, o redisstore.Options, brk, heal func(t *testing.T))
}

// loseReplies is a hook that, while on, lets the pipelines of flushes
// (ZADD, EVAL) reach Redis and then fails them, as a connection lost
// before the replies arrived would. (The handshake of a new connection is
// a pipeline too; it is left alone.)
type loseReplies struct{ on *atomic.Bool }

func (h loseReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h loseReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h loseReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if h.on.Load() && slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "zadd" || c.Name() == "eval" }) {
			lost := fmt.Errorf("reply lost: %w", io.ErrUnexpectedEOF)
			for _, c := range cmds {
				c.SetErr(lost)
			}
			return lost
		}
		return err
	}
}

func proxiedRedis(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	fp, err := faultproxy.Start(limitertest.RedisAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fp.Close)
	return fp
}

func adminOf(t *testing.T, port int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addrOf(port)[0]})
	t.Cleanup(func() { c.Close() })
	return c
}

func mustDo(t *testing.T, c *redis.Client, args ...any) {
	t.Helper()
	if err := c.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

var flushFaults = []flushFault{
	{"connection refused", func(t *testing.T) (redis.UniversalClient, redisstore.Options, func(*testing.T), func(*testing.T)) {
		fp := proxiedRedis(t)
		return nil, redisstore.Options{Addrs: []string{fp.Addr()}, Timeout: faultTimeout},
			func(*testing.T) { fp.Refuse(true); fp.DropAll() },
			func(*testing.T) { fp.Refuse(false) }
	}},
	{"reply lost (the write lands after the timeout)", func(t *testing.T) (redis.UniversalClient, redisstore.Options, func(*testing.T), func(*testing.T)) {
		fp := proxiedRedis(t)
		return nil, redisstore.Options{Addrs: []string{fp.Addr()}, Timeout: faultTimeout},
			func(*testing.T) { fp.SetLatency(4 * faultTimeout) },
			func(t *testing.T) {
				fp.SetLatency(0)
				deadline := time.Now().Add(5 * time.Second)
				for fp.Held() > 0 {
					if time.Now().After(deadline) {
						t.Fatal("delayed writes still held after 5s")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
	}},
	{"OOM", func(t *testing.T) (redis.UniversalClient, redisstore.Options, func(*testing.T), func(*testing.T)) {
		redisServer(t)
		port := startRedis(t, "--maxmemory-policy", "noeviction")
		admin := adminOf(t, port)
		return nil, redisstore.Options{Addrs: addrOf(port), Timeout: time.Second},
			func(t *testing.T) { mustDo(t, admin, "config", "set", "maxmemory", "1") },
			func(t *testing.T) { mustDo(t, admin, "config", "set", "maxmemory", "0") }
	}},
	{"NOPERM on ZADD (the SETs land)", func(t *testing.T) (redis.UniversalClient, redisstore.Options, func(*testing.T), func(*testing.T)) {
		redisServer(t)
		port := startRedis(t, "--user", "gw", "on", ">pw", "~*", "&*", "+@all")
		admin := adminOf(t, port)
		return nil, redisstore.Options{Addrs: addrOf(port), Timeout: time.Second, Username: "gw", Password: "pw"},
			func(t *testing.T) { mustDo(t, admin, "acl", "setuser", "gw", "-zadd") },
			func(t *testing.T) { mustDo(t, admin, "acl", "setuser", "gw", "+zadd") }
	}},
	{"NOSCRIPT (script cache flushed)", func(t *testing.T) (redis.UniversalClient, redisstore.Options, func(*testing.T), func(*testing.T)) {
		redisServer(t)
		port := startRedis(t)
		admin := adminOf(t, port)
		return nil, redisstore.Options{Addrs: addrOf(port), Timeout: time.Second},
			func(t *testing.T) { mustDo(t, admin, "script", "flush") },
			func(*testing.T) {}
	}},
	{"reply lost after Redis applied every write", func(t *testing.T) (redis.UniversalClient, redisstore.Options, func(*testing.T), func(*testing.T)) {
		o := redisstore.Options{Addrs: []string{limitertest.RedisAddr(t)}, Timeout: time.Second}
		c, err := redisstore.NewClient(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		var on atomic.Bool
		c.AddHook(loseReplies{&on})
		return c, o,
			func(*testing.T) { on.Store(true) },
			func(*testing.T) { on.Store(false) }
	}},
}

// mustFlushSoon flushes until a flush succeeds: the first after a fault
// may still meet a connection that the fault broke.
func mustFlushSoon(t *testing.T, s *redisstore.Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.FlushKeys(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flushes still fail 5s after the fault healed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustAllowN admits n requests of key.
func mustAllowN(t *testing.T, s limiter.Store, p *limiter.Policy, key string, n int) {
	t.Helper()
	for range n {
		if d := limitertest.MustAllow(t, s, p, key, 1); !d.Allowed {
			t.Fatalf("%s: rejected", key)
		}
	}
}

// mustListExactly flushes s, then checks the fleet's summaries of p (estimates, active
// keys, requests counted) and the listing against want.
func mustListExactly(t *testing.T, s *redisstore.Store, p *limiter.Policy, want []topk.Entry) {
	t.Helper()
	ctx := context.Background()
	var total int64
	for _, e := range want {
		total += e.N
	}
	if err := s.FlushKeys(ctx); err != nil {
		t.Fatal(err)
	}
	cands, active, counted, err := s.KeyEstimates(ctx, p, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cands, want) || active != int64(len(want)) || counted != total {
		t.Fatalf("summaries: %v, %d active, %d requests; want %v, %d, %d", cands, active, counted, want, len(want), total)
	}
	list, err := s.Keys(ctx, p, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []topk.Entry
	for _, u := range list.Keys {
		got = append(got, topk.Entry{Key: u.Key, N: u.Requests()})
	}
	if !slices.Equal(got, want) || list.ActiveKeys != int64(len(want)) {
		t.Fatalf("listing: %v, active_keys %d; want %v, %d", got, list.ActiveKeys, want, len(want))
	}
}

// TestKeysSurviveFailedFlushes: views that flushes could not write (for
// each kind of failure) are written by the first flush after Redis
// recovers, though their slot ended meanwhile, and are counted once even
// when a failed flush was partly or wholly applied; so are the rejections
// that the local cache answered meanwhile.
func TestKeysSurviveFailedFlushes(t *testing.T) {
	t.Parallel()
	for _, f := range flushFaults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			c, o, brk, heal := f.start(t)
			clock := limitertest.NewClock(time.Now())
			o.Clock, o.Prefix = clock.Now, randomPrefix()
			s, err := redisstore.New(c, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.StopKeyFlushLoop()
			p := limitertest.Policy(t, "flushfault", limiter.SlidingWindow, 1000, time.Minute)
			mustAllowN(t, s, p, "a", 5)
			mustAllowN(t, s, p, "b", 3)
			// r: 2 admitted and 1 rejected by Redis, which blocks it in
			// the local cache; 5 more rejected there during the fault.
			q := limitertest.Policy(t, "flushfault-rej", limiter.SlidingWindow, 2, time.Minute)
			mustAllowN(t, s, q, "r", 2)
			limitertest.MustAllow(t, s, q, "r", 1)

			brk(t)
			for i := range 5 {
				if d, err := s.Allow(context.Background(), q, "r", 1); err != nil || d.Allowed {
					t.Fatalf("blocked request %d: allowed %v, error %v; want a rejection from the local cache", i, d.Allowed, err)
				}
			}
			if err := s.FlushKeys(context.Background()); err == nil {
				t.Fatal("a flush succeeded during the fault")
			}
			clock.Advance(topk.SlotLen(p)) // the slot of a and b is over
			_ = s.FlushKeys(context.Background())
			heal(t)
			mustFlushSoon(t, s)
			mustAllowN(t, s, p, "c", 1)
			mustListExactly(t, s, p, []topk.Entry{{Key: "a", N: 5}, {Key: "b", N: 3}, {Key: "c", N: 1}})
			mustListExactly(t, s, q, []topk.Entry{{Key: "r", N: 8}})
			if u, err := s.Peek(context.Background(), q, "r"); err != nil || u.Count != 2 || u.Rejected != 6 {
				t.Fatalf("r: %+v, %v; want count 2, rejected 6", u, err)
			}
		})
	}
}

// TestFleetListingWhileOneGatewayIsCutOff: three stores share one Redis;
// while the third's connection is broken, the other two list what was
// written (exactly) and their own new requests; once it heals, the third's
// unwritten views reach every listing.
func TestFleetListingWhileOneGatewayIsCutOff(t *testing.T) {
	t.Parallel()
	fp := proxiedRedis(t)
	clock := limitertest.NewClock(time.Now())
	prefix := randomPrefix()
	var stores []*redisstore.Store
	// The two healthy stores get a timeout a loaded machine cannot miss
	// (faultTimeout failed their peeks under CI-like load); the cut-off
	// one's connections are refused, which takes no timeout.
	for i, addr := range []string{limitertest.RedisAddr(t), limitertest.RedisAddr(t), fp.Addr()} {
		timeout := 2 * time.Second
		if i == 2 {
			timeout = faultTimeout
		}
		s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{addr}, Timeout: timeout, Prefix: prefix, Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		s.StopKeyFlushLoop()
		stores = append(stores, s)
	}
	a, b, c := stores[0], stores[1], stores[2]
	p := limitertest.Policy(t, "fleetcut", limiter.SlidingWindow, 1000, time.Minute)
	mustAllowN(t, a, p, "x", 4)
	mustAllowN(t, b, p, "x", 2)
	mustAllowN(t, b, p, "y", 3)
	mustAllowN(t, c, p, "x", 1)
	for _, s := range stores {
		mustFlushSoon(t, s)
	}
	mustAllowN(t, c, p, "z", 5) // counted in Redis, not yet in a summary there

	fp.Refuse(true)
	fp.DropAll()
	for i := range 3 {
		if err := c.FlushKeys(context.Background()); err == nil && i == 0 {
			t.Fatal("the cut-off store's flush succeeded")
		}
		mustAllowN(t, a, p, "x", 1)
		mustAllowN(t, b, p, "y", 1)
		for _, s := range []*redisstore.Store{a, b} {
			if err := s.FlushKeys(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		want := []topk.Entry{{Key: "x", N: int64(8 + i)}, {Key: "y", N: int64(4 + i)}}
		for j, s := range []*redisstore.Store{a, b} {
			t.Run(fmt.Sprintf("cut off %d, store %d", i, j), func(t *testing.T) { mustListExactly(t, s, p, want) })
		}
		clock.Advance(topk.SlotLen(p))
	}
	fp.Refuse(false)
	mustFlushSoon(t, c)
	want := []topk.Entry{{Key: "x", N: 10}, {Key: "y", N: 6}, {Key: "z", N: 5}}
	for _, s := range stores {
		mustListExactly(t, s, p, want)
	}
}

// TestResetDropsRejectionsOnTheirWay: rejections answered from the local
// cache while Redis was unreachable do not land on the key after a reset.
func TestResetDropsRejectionsOnTheirWay(t *testing.T) {
	t.Parallel()
	fp := proxiedRedis(t)
	clock := limitertest.NewClock(time.Now())
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{fp.Addr()}, Timeout: faultTimeout, Prefix: randomPrefix(), Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.StopKeyFlushLoop()
	ctx := context.Background()
	q := limitertest.Policy(t, "resetrej", limiter.SlidingWindow, 2, time.Minute)
	mustAllowN(t, s, q, "r", 2)
	limitertest.MustAllow(t, s, q, "r", 1) // rejected by Redis: blocked locally
	fp.Refuse(true)
	fp.DropAll()
	for range 5 {
		if d, err := s.Allow(ctx, q, "r", 1); err != nil || d.Allowed {
			t.Fatalf("allowed %v, error %v; want a rejection from the local cache", d.Allowed, err)
		}
	}
	if err := s.FlushKeys(ctx); err == nil {
		t.Fatal("a flush succeeded while Redis was unreachable")
	}
	fp.Refuse(false)
	deadline := time.Now().Add(5 * time.Second)
	for s.Reset(ctx, q, "r") != nil {
		if time.Now().After(deadline) {
			t.Fatal("Reset still fails 5s after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustFlushSoon(t, s)
	if u, err := s.Peek(ctx, q, "r"); err != nil || u.Count != 0 || u.Rejected != 0 {
		t.Fatalf("r after its reset: %+v, %v; want nothing counted", u, err)
	}
}
