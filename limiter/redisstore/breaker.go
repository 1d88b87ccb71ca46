package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned without calling Redis while the circuit
// breaker is open: Redis failed repeatedly and is being probed.
var ErrUnavailable = errors.New("redis unavailable (circuit open)")

// Defaults of a breaker whose threshold or interval is zero.
const (
	defaultBreakerThreshold = 5
	defaultBreakerInterval  = 250 * time.Millisecond
)

// breaker stops a dead Redis from costing every request a timeout. After
// threshold consecutive failures it opens: calls fail at once with
// ErrUnavailable, except one probe per interval, whose success closes it.
// The zero value is a closed breaker with a threshold of 5 and an interval
// of 250ms that reads time.Now; it is safe for concurrent use.
type breaker struct {
	threshold int32
	interval  time.Duration
	failures  atomic.Int32
	openUntil atomic.Int64 // unix ns; zero when closed
	probing   atomic.Bool
	now       func() time.Time // nil means time.Now
}

func newBreaker(threshold int, interval time.Duration) *breaker {
	return &breaker{threshold: int32(threshold), interval: interval}
}

func (b *breaker) clock() time.Time {
	if b.now == nil {
		return time.Now()
	}
	return b.now()
}

// allow reports whether a call may go to Redis, and whether it is the probe.
func (b *breaker) allow() (ok, probe bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return true, false
	}
	if b.clock().UnixNano() < until {
		return false, false
	}
	if b.probing.CompareAndSwap(false, true) {
		return true, true
	}
	return false, false
}

// done records the outcome of a call that allow let through.
func (b *breaker) done(probe bool, failed bool) {
	if probe {
		defer b.probing.Store(false)
	}
	if !failed {
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		if b.openUntil.Load() != 0 {
			b.openUntil.Store(0)
		}
		return
	}
	threshold, interval := b.threshold, b.interval
	if threshold <= 0 {
		threshold = defaultBreakerThreshold
	}
	if interval <= 0 {
		interval = defaultBreakerInterval
	}
	if probe || b.failures.Add(1) >= threshold {
		b.openUntil.Store(b.clock().Add(interval).UnixNano())
	}
}

// open reports whether the breaker is open.
func (b *breaker) open() bool { return b.openUntil.Load() != 0 }

// close closes the breaker.
func (b *breaker) close() {
	b.failures.Store(0)
	b.openUntil.Store(0)
}

// nodeBreakers holds one breaker per Redis Cluster master, so that a dead
// master fails only the keys it serves. It is safe for concurrent use.
type nodeBreakers struct {
	client    *redis.ClusterClient
	threshold int
	interval  time.Duration
	timeout   time.Duration // bounds finding a master while the slots are unknown
	located   atomic.Bool   // a master was found: the client holds the slots
	mu        sync.RWMutex
	byAddr    map[string]*breaker
	fallback  *breaker // when the key's master is unknown
}

func newNodeBreakers(c *redis.ClusterClient, threshold int, interval, timeout time.Duration, fallback *breaker) *nodeBreakers {
	return &nodeBreakers{client: c, threshold: threshold, interval: interval, timeout: timeout, byAddr: map[string]*breaker{}, fallback: fallback}
}

// forKey returns the breaker of the master that serves key, as the
// client's cluster state says. When the client cannot say (it has not
// loaded the slots, and loading them failed within the store's timeout),
// it returns the fallback breaker and the error.
func (n *nodeBreakers) forKey(ctx context.Context, key string) (*breaker, error) {
	if !n.located.Load() {
		// Until the client holds the slots, finding a master loads them,
		// which only ctx's deadline ends (or the client's read timeout,
		// per node). Once loaded, the client keeps them and refreshes them
		// in the background: the lookup does not wait, and takes no timer.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.timeout)
		defer cancel()
	}
	node, err := n.client.MasterForKey(ctx, key)
	if err != nil {
		return n.fallback, err
	}
	if !n.located.Load() {
		n.located.Store(true)
	}
	addr := node.Options().Addr
	n.mu.RLock()
	b := n.byAddr[addr]
	n.mu.RUnlock()
	if b != nil {
		return b, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if b = n.byAddr[addr]; b == nil {
		b = newBreaker(n.threshold, n.interval)
		n.byAddr[addr] = b
	}
	return b, nil
}

// anyOpen reports whether some master's breaker is open.
func (n *nodeBreakers) anyOpen() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, b := range n.byAddr {
		if b.open() {
			return true
		}
	}
	return false
}
