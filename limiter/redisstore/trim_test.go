package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// TestTrimRefusedIsReported: a server whose ACL refuses HDEL still admits,
// but the hashes would grow with every bucket: Ping reports it until a
// trim succeeds, and then the hash shrinks back to its cap.
func TestTrimRefusedIsReported(t *testing.T) {
	t.Parallel()
	port := startRedis(t, "--user", "sluice", "on", ">pw", "~*", "&*", "+@all", "-hdel")
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { admin.Close() })
	clock := limitertest.NewClock(time.Now())
	s, err := redisstore.New(nil, redisstore.Options{Addrs: addrOf(port), Username: "sluice", Password: "pw", Clock: clock.Now, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := limitertest.Policy(t, "deny", limiter.SlidingWindow, 1_000_000, time.Second)
	steps := func(n int) {
		for range n {
			limitertest.MustAllow(t, s, p, "k", 1)
			s.WaitTrims()
			clock.Advance(p.BucketSize())
		}
	}
	steps(3 * p.Buckets)
	if err := s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "HDEL") {
		t.Fatalf("Ping with HDEL refused: %v, want an error naming HDEL", err)
	}
	if err := admin.Do(context.Background(), "acl", "setuser", "sluice", "+hdel").Err(); err != nil {
		t.Fatal(err)
	}
	steps(2)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after HDEL was allowed: %v", err)
	}
	hash := windowHash(t, admin, redisstore.DefaultPrefix)
	if n := admin.HLen(context.Background(), hash).Val(); n > int64(p.Buckets+2) {
		t.Fatalf("%d fields after a trim succeeded, want at most %d", n, p.Buckets+2)
	}
}

// TestTrimDeletesFieldsThatAreNotBuckets: fields written by hand or by
// another program (names or values that are not integers) go with the
// first trim, so they are not read by every decision for ever.
func TestTrimDeletesFieldsThatAreNotBuckets(t *testing.T) {
	t.Parallel()
	w := newMiniWindow(t, "junk:", 10, redisstore.Options{})
	m, s, clock, p, hash := w.m, w.s, w.clock, w.p, w.hash
	c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
	for i := range 300 {
		m.HSet(hash, "junk"+strconv.Itoa(i), "1")
		m.HSet(hash, strconv.FormatInt(c-1-int64(i%p.Buckets), 10)+"x", "1")
		m.HSet(hash, strconv.FormatInt(c-50-int64(i), 10), "not a count")
	}
	limitertest.MustAllow(t, s, p, "k", 1)
	s.WaitTrims()
	if f, _ := m.HKeys(hash); len(f) > p.Buckets+2 {
		t.Fatalf("%d fields after a trim, want at most %d", len(f), p.Buckets+2)
	}
	if u := limitertest.MustPeek(t, s, p, "k"); u.Count != 2 {
		t.Fatalf("count %d, want 2", u.Count)
	}
}

// TestOneTrimPerHash: 64 callers on one key see its hash above the cap at
// once; one HDEL goes, not one per caller.
func TestOneTrimPerHash(t *testing.T) {
	t.Parallel()
	port := startRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { admin.Close() })
	clock := limitertest.NewClock(time.Now())
	s, err := redisstore.New(nil, redisstore.Options{Addrs: addrOf(port), Clock: clock.Now, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := limitertest.Policy(t, "herd", limiter.SlidingWindow, 1<<40, time.Second)
	const buckets = 60
	for range buckets {
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range 4 {
					if _, err := s.Allow(context.Background(), p, "k", 1); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		clock.Advance(p.BucketSize())
	}
	s.WaitTrims()
	info := admin.Info(context.Background(), "commandstats").Val()
	var hdels int
	for l := range strings.SplitSeq(info, "\r\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_hdel:calls="); ok {
			hdels, _ = strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		}
	}
	if hdels > 3*buckets {
		t.Fatalf("%d HDELs over %d buckets, want at most %d: one trim per hash at a time", hdels, buckets, 3*buckets)
	}
}
