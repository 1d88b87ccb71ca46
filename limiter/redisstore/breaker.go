package redisstore

import (
	"errors"
	"sync/atomic"
	"time"
)

// ErrUnavailable is returned without calling Redis while the circuit
// breaker is open: Redis failed repeatedly and is being probed.
var ErrUnavailable = errors.New("redis unavailable (circuit open)")

// breaker stops a dead Redis from costing every request a timeout. After
// threshold consecutive failures it opens: calls fail at once with
// ErrUnavailable, except one probe per interval, whose success closes it.
// The zero value is closed; it is safe for concurrent use.
type breaker struct {
	threshold int32
	interval  time.Duration
	failures  atomic.Int32
	openUntil atomic.Int64 // unix ns; zero when closed
	probing   atomic.Bool
	now       func() time.Time
}

func newBreaker(threshold int, interval time.Duration) *breaker {
	return &breaker{threshold: int32(threshold), interval: interval, now: time.Now}
}

// allow reports whether a call may go to Redis, and whether it is the probe.
func (b *breaker) allow() (ok, probe bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return true, false
	}
	if b.now().UnixNano() < until {
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
		b.failures.Store(0)
		b.openUntil.Store(0)
		return
	}
	if probe || b.failures.Add(1) >= b.threshold {
		b.openUntil.Store(b.now().Add(b.interval).UnixNano())
	}
}

// open reports whether the breaker is open.
func (b *breaker) open() bool { return b.openUntil.Load() != 0 }
