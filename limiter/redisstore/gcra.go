package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sluice-gateway/sluice/limiter"
)

// gcra runs one Lua script by SHA (gcraScript), one round trip either way:
// its arithmetic (algo.Cell's) needs max(tat, now) read and written at
// once, which plain commands cannot do.

// gcraCall builds the call of the gcra script.
func (s *Store) gcraCall(p *limiter.Policy, key, storeKey string, limit, cost int64, charge bool, nowUS int64) call {
	name := s.keyName(p, storeKey)
	mode := "0"
	if charge {
		mode = "1"
	}
	winMS := strconv.FormatInt(max(1, p.Window.Milliseconds()), 10)
	return call{gcraScript, []string{name, name + ":rej"}, []any{us(nowUS), gcraInterval(p, limit), p.BurstFor(key), cost, mode, winMS, p.Window.Microseconds()}}
}

// gcraInterval is the emission interval of a gcra key, in microseconds.
func gcraInterval(p *limiter.Policy, limit int64) int64 {
	return max(1, p.Window.Microseconds()/limit)
}

// allowGCRA decides a gcra request.
func (s *Store) allowGCRA(ctx context.Context, p *limiter.Policy, key, storeKey string, limit, cost, now int64) (limiter.Decision, error) {
	nowUS := now / 1000
	o := &scriptOp{c: s.gcraCall(p, key, storeKey, limit, cost, true, nowUS)}
	if err := s.batch.do(ctx, o); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis %s: %w", p.Algorithm, err)
	}
	if o.err != nil {
		return limiter.Decision{}, fmt.Errorf("redis %s: %w", p.Algorithm, o.err)
	}
	d, _, err := result(o.v, limit)
	if err != nil {
		return d, err
	}
	if d.Allowed {
		d.Charge = limiter.Charge{Cost: cost, At: nowUS * 1000}
	}
	return d, nil
}

// peekGCRA reads a gcra key without counting.
func (s *Store) peekGCRA(ctx context.Context, p *limiter.Policy, storeKey string, limit, now int64) (limiter.Usage, error) {
	u := limiter.Usage{Key: storeKey, Limit: limit}
	o := &scriptOp{c: s.gcraCall(p, storeKey, storeKey, limit, 1, false, now/1000)}
	if err := s.batch.do(ctx, o); err != nil {
		return u, err
	}
	if o.err != nil {
		return u, o.err
	}
	d, rej, err := result(o.v, limit)
	u.Count, u.Remaining, u.ResetAfter, u.Rejected = d.Count, d.Remaining, d.ResetAfter, rej
	return u, err
}

// refundGCRA moves a gcra key's TAT back by the charge.
func (s *Store) refundGCRA(ctx context.Context, p *limiter.Policy, key, name string, c limiter.Charge) error {
	return s.runRefund(ctx, call{gcraRefundScript, []string{name}, []any{us(s.clock().UnixMicro()), gcraInterval(p, p.LimitFor(key)), c.Cost}})
}
