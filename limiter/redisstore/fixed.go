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

// fixed_window runs on plain pipelined commands, like sliding_window, with
// algo.Fixed's arithmetic: HINCRBY of the field of the current window
// (its start, in microseconds), HDEL of the previous window's field and
// PEXPIRE to the end of the window; a rejected request takes its units
// back in a second round trip. The view of each request holds every
// request before it, so it never admits more than Limit per window.

type fixedOp struct {
	key, field, prev string
	cost             int64
	ttl              time.Duration
	incr, drop       *redis.IntCmd
	expire           *redis.BoolCmd
}

func (o *fixedOp) queue(ctx context.Context, pipe redis.Pipeliner) {
	o.incr = pipe.HIncrBy(ctx, o.key, o.field, o.cost)
	o.drop = pipe.HDel(ctx, o.key, o.prev)
	o.expire = pipe.PExpire(ctx, o.key, o.ttl)
}

func (o *fixedOp) done(context.Context, *Store) {}

func (o *fixedOp) err() error {
	for _, err := range []error{o.incr.Err(), o.drop.Err(), o.expire.Err()} {
		if err != nil {
			return err
		}
	}
	return nil
}

// allowFixed decides a fixed_window request.
func (s *Store) allowFixed(ctx context.Context, p *limiter.Policy, storeKey string, limit, cost, now int64) (limiter.Decision, error) {
	fw := algo.FixedOf(p, time.Microsecond)
	nowUS := now / 1000
	start := fw.Start(nowUS)
	name := s.keyName(p, storeKey)
	o := &fixedOp{key: name, field: strconv.FormatInt(start, 10), prev: strconv.FormatInt(fw.Start(start-1), 10), cost: cost,
		ttl: time.Duration(fw.End(nowUS)-nowUS)*time.Microsecond + windowMargin}
	if err := s.batch.do(ctx, o); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis fixed_window: %w", err)
	}
	if err := o.err(); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis fixed_window: %w", err)
	}
	d := fw.Decide(o.incr.Val()-cost, nowUS, limit, cost)
	if d.Allowed {
		return d, nil
	}
	if err := s.takeBack(ctx, p, name, o.field, cost); err != nil {
		return d, fmt.Errorf("redis fixed_window: %w", err)
	}
	return d, nil
}

// peekFixed reads a fixed_window key without counting.
func (s *Store) peekFixed(ctx context.Context, p *limiter.Policy, storeKey string, limit, now int64) (limiter.Usage, error) {
	u := limiter.Usage{Key: storeKey, Limit: limit}
	fw := algo.FixedOf(p, time.Microsecond)
	nowUS := now / 1000
	name := s.keyName(p, storeKey)
	var count, rej *redis.StringCmd
	o := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) {
		count = pipe.HGet(ctx, name, strconv.FormatInt(fw.Start(nowUS), 10))
		rej = pipe.Get(ctx, name+":rej")
	}}
	if err := s.batch.do(ctx, o); err != nil {
		return u, err
	}
	n, err := count.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return u, err
	}
	r, err := rej.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return u, err
	}
	var d limiter.Decision
	fw.Fill(&d, n, nowUS, limit)
	u.Count, u.Remaining, u.ResetAfter, u.Rejected = d.Count, d.Remaining, d.ResetAfter, r
	return u, nil
}
