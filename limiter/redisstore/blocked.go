package redisstore

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// blockedCache remembers keys that Redis rejected until their retry-after,
// as Envoy's ratelimit does: no request for them can be admitted before
// then (barring a reset or a refund), so they are rejected locally without
// a round trip. Rejections answered from the cache are added to the key's
// rejected count on its next call to Redis. A reset through this process
// clears the entry; other processes keep theirs until it expires.
type blockedCache struct {
	seed   maphash.Seed
	shards [32]struct {
		mu sync.Mutex
		m  map[blockedKey]*blockedEntry
	}
}

type blockedKey struct {
	policy    string
	algorithm limiter.Algorithm
	window    time.Duration
	key       string
}

type blockedEntry struct {
	until   time.Time // local monotonic time
	limit   int64
	count   int64
	pending int64 // rejections answered locally, not yet counted in Redis
}

const blockedShardMax = 1 << 14

func newBlockedCache() *blockedCache {
	c := &blockedCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[blockedKey]*blockedEntry{}
	}
	return c
}

func blockedKeyOf(p *limiter.Policy, storeKey string) blockedKey {
	return blockedKey{p.Name, p.Algorithm, p.Window, storeKey}
}

func (c *blockedCache) shard(k blockedKey) *struct {
	mu sync.Mutex
	m  map[blockedKey]*blockedEntry
} {
	return &c.shards[maphash.String(c.seed, k.key)%uint64(len(c.shards))]
}

// check answers a rejection when k is blocked at now under the same limit.
func (c *blockedCache) check(k blockedKey, now time.Time, limit int64) (limiter.Decision, bool) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil || !now.Before(e.until) {
		return limiter.Decision{}, false
	}
	if e.limit != limit {
		// The key's limit changed since (a run-time override): the retry
		// time no longer holds, so Redis decides again; the pending
		// rejections stay to be counted with that call.
		e.until = time.Time{}
		return limiter.Decision{}, false
	}
	e.pending++
	wait := e.until.Sub(now)
	return limiter.Decision{Limit: e.limit, Count: e.count, RetryAfter: wait, ResetAfter: wait}, true
}

// block remembers a rejection until now+d.
func (c *blockedCache) block(k blockedKey, now time.Time, d limiter.Decision) {
	if d.RetryAfter <= 0 {
		return
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= blockedShardMax {
		for old, e := range sh.m {
			if !now.Before(e.until) {
				delete(sh.m, old)
			}
		}
		if len(sh.m) >= blockedShardMax {
			return // full of live entries: just ask Redis
		}
	}
	e := sh.m[k]
	if e == nil {
		e = &blockedEntry{}
		sh.m[k] = e
	}
	e.until, e.limit, e.count = now.Add(d.RetryAfter), d.Limit, d.Count
}

// take removes k's entry and returns the rejections it answered locally.
func (c *blockedCache) take(k blockedKey) int64 {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil {
		return 0
	}
	delete(sh.m, k)
	return e.pending
}

// pending returns the rejections k's entry answered locally so far.
func (c *blockedCache) pending(k blockedKey) int64 {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[k]; e != nil {
		return e.pending
	}
	return 0
}

// drainPending returns, and forgets, the rejections each entry answered
// locally since it was last asked, so that they reach Redis without
// waiting for the key's next call there.
func (c *blockedCache) drainPending() map[blockedKey]int64 {
	out := map[blockedKey]int64{}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.pending > 0 {
				out[k] += e.pending
				e.pending = 0
			}
		}
		sh.mu.Unlock()
	}
	return out
}
