package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// driver is the Redis store's code for one algorithm. New builds a table
// of them, indexed by limiter.AlgorithmID, once per store (batched mode
// swaps in sliding_window's local decisions there); every call takes its
// policy's entry and runs it, without comparing algorithms.
type driver struct {
	// allow decides a request in Redis; key is the caller's (for
	// overrides), storeKey its stored form.
	allow func(ctx context.Context, p *limiter.Policy, key, storeKey string, limit, cost, now int64) (limiter.Decision, error)
	// peek reads a key without counting.
	peek func(ctx context.Context, p *limiter.Policy, storeKey string, limit, now int64) (limiter.Usage, error)
	// refund gives back a charge of key, whose limiter key is name.
	refund func(ctx context.Context, p *limiter.Policy, key, name string, c limiter.Charge) error
	// local, when set, decides without Redis, before the local cache and
	// the breaker (batched mode); refundLocal then takes back a local
	// admission, reporting false when it already went to Redis.
	local       func(p *limiter.Policy, key string, cost int64) limiter.Decision
	refundLocal func(p *limiter.Policy, key string, c limiter.Charge) bool
}

// algoCodes name each algorithm in limiter key names.
var algoCodes = [limiter.NumAlgorithms]string{
	limiter.SlidingWindowID: "sw",
	limiter.SlidingLogID:    "sl",
	limiter.FixedWindowID:   "fw",
	limiter.GCRAID:          "gc",
}

// newDrivers builds s's table of drivers.
func (s *Store) newDrivers() [limiter.NumAlgorithms]driver {
	window := driver{
		allow: func(ctx context.Context, p *limiter.Policy, _, storeKey string, limit, cost, now int64) (limiter.Decision, error) {
			return s.allowWindow(ctx, p, storeKey, limit, cost, now)
		},
		peek:   s.peekWindow,
		refund: s.refundWindow,
	}
	if s.batched != nil {
		window.local, window.refundLocal = s.allowBatched, s.refundBatched
	}
	return [limiter.NumAlgorithms]driver{
		limiter.SlidingWindowID: window,
		limiter.SlidingLogID: {
			allow: func(ctx context.Context, p *limiter.Policy, _, storeKey string, limit, cost, now int64) (limiter.Decision, error) {
				return s.allowLog(ctx, p, storeKey, limit, cost, now)
			},
			peek:   s.peekLog,
			refund: s.refundLog,
		},
		limiter.FixedWindowID: {
			allow: func(ctx context.Context, p *limiter.Policy, _, storeKey string, limit, cost, now int64) (limiter.Decision, error) {
				return s.allowFixed(ctx, p, storeKey, limit, cost, now)
			},
			peek:   s.peekFixed,
			refund: s.refundFixed,
		},
		limiter.GCRAID: {allow: s.allowGCRA, peek: s.peekGCRA, refund: s.refundGCRA},
	}
}

// refundWindow takes a sliding_window charge back from its bucket.
func (s *Store) refundWindow(ctx context.Context, p *limiter.Policy, _, name string, c limiter.Charge) error {
	return s.runRefund(ctx, call{refundWindowScript, []string{name}, []any{us(c.At / 1000 / p.BucketSize().Microseconds()), c.Cost}})
}

// refundFixed takes a fixed_window charge back from its window.
func (s *Store) refundFixed(ctx context.Context, p *limiter.Policy, _, name string, c limiter.Charge) error {
	start := algo.FixedOf(p, time.Microsecond).Start(c.At / 1000)
	return s.runRefund(ctx, call{refundWindowScript, []string{name}, []any{us(start), c.Cost}})
}

// runRefund runs a refund script.
func (s *Store) runRefund(ctx context.Context, c call) error {
	sc := &scriptOp{c: c}
	if err := s.batch.do(ctx, sc); err != nil {
		return fmt.Errorf("redis refund: %w", err)
	}
	if sc.err != nil {
		return fmt.Errorf("redis refund: %w", sc.err)
	}
	return nil
}
