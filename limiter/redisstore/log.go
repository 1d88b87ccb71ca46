package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
)

// sliding_log runs on plain pipelined commands with limiter.Log's
// arithmetic: one sorted-set member per unit, scored by its time in
// microseconds. A request adds its members (ZADD, first, so that a server
// out of memory refuses it), drops the members that left the window
// (ZREMRANGEBYSCORE), counts the window (ZCOUNT) and sets the TTL. When
// the count without its own members leaves no room, a second round trip
// removes its members, counts the rejection and reads the member whose
// leaving makes room, for the retry time. Each request's count holds every
// request before it, so no span of one window admits more than Limit.

type logOp struct {
	key     string
	members []redis.Z
	cutoff  string // members scored at or below it are outside the window
	ttl     time.Duration
	add     *redis.IntCmd
	trim    *redis.IntCmd
	count   *redis.IntCmd
	expire  *redis.BoolCmd
}

func (o *logOp) queue(ctx context.Context, pipe redis.Pipeliner) {
	o.add = pipe.ZAdd(ctx, o.key, o.members...)
	o.trim = pipe.ZRemRangeByScore(ctx, o.key, "-inf", o.cutoff)
	o.count = pipe.ZCount(ctx, o.key, "("+o.cutoff, "+inf")
	o.expire = pipe.PExpire(ctx, o.key, o.ttl)
}

func (o *logOp) done(context.Context, *Store) {}

func (o *logOp) err() error {
	for _, err := range []error{o.add.Err(), o.trim.Err(), o.count.Err(), o.expire.Err()} {
		if err != nil {
			return err
		}
	}
	return nil
}

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
	lg := limiter.LogOf(p, time.Microsecond)
	nowUS := now / 1000
	name := s.keyName(p, storeKey)
	id := s.idPrefix + strconv.FormatUint(s.ids.Add(1), 36)
	names := logMembers(id, cost)
	members := make([]redis.Z, cost)
	for i, m := range names {
		members[i] = redis.Z{Score: float64(nowUS), Member: m}
	}
	cutoff := us(nowUS - lg.Size)
	o := &logOp{key: name, members: members, cutoff: cutoff, ttl: p.Window + windowMargin}
	if err := s.batch.do(ctx, o); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_log: %w", err)
	}
	if err := o.err(); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_log: %w", err)
	}
	before := o.count.Val() - cost
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
	lg := limiter.LogOf(p, time.Microsecond)
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
