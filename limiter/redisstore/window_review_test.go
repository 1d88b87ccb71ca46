package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// TestWindowCloseDuringTrims: Close while decisions that trim run.
func TestWindowCloseDuringTrims(t *testing.T) {
	for range 20 {
		m := miniredis.RunT(t)
		clock := limitertest.NewClock(limitertest.Start)
		m.SetTime(limitertest.Start)
		s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}, Clock: clock.Now, Prefix: "cl:", Timeout: time.Second, NoLocalCache: true})
		if err != nil {
			t.Fatal(err)
		}
		p := limitertest.Policy(t, "cl", limiter.SlidingWindow, 1_000_000, time.Second)
		limitertest.MustAllow(t, s, p, "k", 1)
		var hash string
		for _, k := range m.Keys() {
			if !strings.HasSuffix(k, ":rej") {
				hash = k
			}
		}
		c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
		for i := range 100 {
			m.HSet(hash, strconv.FormatInt(c-100-int64(i), 10), "1")
		}
		var wg, started sync.WaitGroup
		for range 8 {
			started.Add(1)
			wg.Go(func() {
				for i := range 200 {
					_, _ = s.Allow(context.Background(), p, "k", 1)
					clock.Advance(p.BucketSize()) // a trim every other bucket
					if i == 20 {
						started.Done()
					}
				}
			})
		}
		started.Wait()
		s.Close()
		wg.Wait()
	}
}

// TestWindowIgnoresFieldsFarAhead: a bucket field far ahead of the clock (a Redis
// clock that stepped forward then back, or a hand-made field) locks the
// key out for as long as it stays ahead; the old HMGET c-k..c+1 ignored it.
func TestWindowIgnoresFieldsFarAhead(t *testing.T) {
	m := miniredis.RunT(t)
	m.SetTime(limitertest.Start)
	clock := limitertest.NewClock(limitertest.Start)
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}, Clock: clock.Now, Prefix: "fut:", Timeout: 5 * time.Second, NoLocalCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "fut", limiter.SlidingWindow, 10, time.Second)
	limitertest.MustAllow(t, s, p, "k", 1)
	keys := m.Keys()
	var hash string
	for _, k := range keys {
		if strings.HasPrefix(k, "fut:sw:") && !strings.HasSuffix(k, ":rej") {
			hash = k
		}
	}
	c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
	// An hour of 100ms buckets ahead.
	m.HSet(hash, strconv.FormatInt(c+36000, 10), "10")
	clock.Advance(p.Window * 2)
	m.SetTime(clock.Now())
	d := limitertest.MustAllow(t, s, p, "k", 1)
	if !d.Allowed {
		t.Fatalf("a fresh window with a field 3600s ahead: rejected (count %d, reset %v)", d.Count, d.ResetAfter)
	}
}

// TestWindowHugeCounts: buckets whose sum overflows int64 must not admit.
func TestWindowHugeCounts(t *testing.T) {
	m := miniredis.RunT(t)
	m.SetTime(limitertest.Start)
	clock := limitertest.NewClock(limitertest.Start)
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{m.Addr()}, Clock: clock.Now, Prefix: "huge:", Timeout: 5 * time.Second, NoLocalCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "huge", limiter.SlidingWindow, 10, time.Second)
	limitertest.MustAllow(t, s, p, "k", 1)
	var hash string
	for _, k := range m.Keys() {
		if strings.HasPrefix(k, "huge:sw:") && !strings.HasSuffix(k, ":rej") {
			hash = k
		}
	}
	c := clock.Now().UnixMicro() / p.BucketSize().Microseconds()
	m.HSet(hash, strconv.FormatInt(c-1, 10), strconv.FormatInt(1<<62, 10))
	m.HSet(hash, strconv.FormatInt(c-2, 10), strconv.FormatInt(1<<62, 10))
	if d := limitertest.MustAllow(t, s, p, "k", 1); d.Allowed {
		t.Fatalf("2^63 units in the window: admitted (count %d)", d.Count)
	}
}
