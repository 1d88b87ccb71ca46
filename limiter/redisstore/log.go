package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// sliding_log keeps one sorted-set member per unit, scored by its time in
// microseconds, and decides with algo.Log's arithmetic. A request adds
// its members, drops the members that left the window and counts the
// window in one small script (logAddScript): the count must be taken in
// the same step as the add, or two requests interleaved on two connections
// could each count the other and both be rejected at the limit. When the
// count without its own members leaves no room, a second round trip
// removes its members, counts the rejection and reads the member whose
// leaving makes room, for the retry time. Each request's count holds
// exactly the requests before it, so no span of one window admits more
// than Limit, and a burst admits exactly Limit.

// logMembers returns the members of a charge: one per unit.
func logMembers(id string, cost int64) []string {
	out := make([]string, cost)
	for i := range out {
		out[i] = id + ":" + strconv.Itoa(i+1)
	}
	return out
}

// allowLog decides a sliding_log request.
func (s *Store) allowLog(ctx context.Context, p *limiter.Policy, storeKey string, limit, cost, now int64) (limiter.Decision, error) {
	lg := algo.LogOf(p, time.Microsecond)
	nowUS := now / 1000
	name := s.keyName(p, storeKey)
	id := s.idPrefix + strconv.FormatUint(s.ids.Add(1), 36)
	names := logMembers(id, cost)
	cutoff := us(nowUS - lg.Size)
	args := make([]any, 0, 3+len(names))
	args = append(args, us(nowUS), cutoff, (p.Window + windowMargin).Milliseconds())
	for _, m := range names {
		args = append(args, m)
	}
	o := &scriptOp{c: call{logAddScript, []string{name}, args}}
	if err := s.batch.do(ctx, o); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_log: %w", err)
	}
	if o.err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_log: %w", o.err)
	}
	count, ok := o.v.(int64)
	if !ok {
		return limiter.Decision{}, fmt.Errorf("redis sliding_log: unexpected reply %T", o.v)
	}
	before := count - cost
	d := limiter.Decision{Limit: limit}
	if lg.Fits(before, limit, cost) {
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: nowUS * 1000, ID: id}
		lg.Fill(&d, before+cost, nowUS, nowUS, limit)
		return d, nil
	}
	// The take-back goes even when the caller has gone.
	need := before + cost - limit // units that must leave the window first
	var rem *redis.IntCmd
	var nth, newest *redis.ZSliceCmd
	tb := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) {
		args := make([]any, len(names))
		for i, m := range names {
			args[i] = m
		}
		rem = pipe.ZRem(ctx, name, args...)
		pipe.Incr(ctx, name+":rej")
		pipe.PExpire(ctx, name+":rej", p.Window)
		if cost <= limit {
			nth = pipe.ZRangeByScoreWithScores(ctx, name, &redis.ZRangeBy{Min: "(" + cutoff, Max: "+inf", Offset: need - 1, Count: 1})
		}
		newest = pipe.ZRangeWithScores(ctx, name, -1, -1)
	}}
	err := s.batch.do(context.WithoutCancel(ctx), tb)
	if err == nil {
		err = rem.Err()
	}
	if err != nil {
		return d, fmt.Errorf("redis sliding_log: taking back a rejected request: %w", err)
	}
	var times, units []int64
	if nth != nil {
		if z := nth.Val(); len(z) == 1 {
			times, units = []int64{int64(z[0].Score)}, []int64{need}
		}
	}
	d.RetryAfter = lg.RetryAfter(times, units, need, nowUS, limit, cost)
	lg.Fill(&d, before, newestScore(newest, nowUS), nowUS, limit)
	return d, nil
}

func newestScore(c *redis.ZSliceCmd, fallback int64) int64 {
	if z := c.Val(); len(z) == 1 {
		return int64(z[0].Score)
	}
	return fallback
}

// peekLog reads a sliding_log key without counting.
func (s *Store) peekLog(ctx context.Context, p *limiter.Policy, storeKey string, limit, now int64) (limiter.Usage, error) {
	u := limiter.Usage{Key: storeKey, Limit: limit}
	lg := algo.LogOf(p, time.Microsecond)
	nowUS := now / 1000
	name := s.keyName(p, storeKey)
	var count *redis.IntCmd
	var newest *redis.ZSliceCmd
	var rej *redis.StringCmd
	o := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) {
		count = pipe.ZCount(ctx, name, "("+us(nowUS-lg.Size), "+inf")
		newest = pipe.ZRangeWithScores(ctx, name, -1, -1)
		rej = pipe.Get(ctx, name+":rej")
	}}
	if err := s.batch.do(ctx, o); err != nil {
		return u, err
	}
	if err := count.Err(); err != nil {
		return u, err
	}
	r, err := rej.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return u, err
	}
	var d limiter.Decision
	lg.Fill(&d, count.Val(), newestScore(newest, nowUS), nowUS, limit)
	u.Count, u.Remaining, u.ResetAfter, u.Rejected = d.Count, d.Remaining, d.ResetAfter, r
	return u, nil
}

// refundLog removes a sliding_log charge's members.
func (s *Store) refundLog(ctx context.Context, _ *limiter.Policy, _, name string, c limiter.Charge) error {
	members := make([]any, c.Cost)
	for i, m := range logMembers(c.ID, c.Cost) {
		members[i] = m
	}
	var zrem *redis.IntCmd
	o := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) { zrem = pipe.ZRem(ctx, name, members...) }}
	if err := s.batch.do(ctx, o); err != nil {
		return fmt.Errorf("redis refund: %w", err)
	}
	if err := zrem.Err(); err != nil {
		return fmt.Errorf("redis refund: %w", err)
	}
	return nil
}
