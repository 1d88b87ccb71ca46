package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
)

// sliding_window runs on plain pipelined commands, not a script: HINCRBY
// on the current bucket, HGETALL of the key's buckets and PEXPIRE, and a
// second round trip (HINCRBY back, INCR of the rejected count) only when
// the request is rejected. A script costs Redis several times as much CPU.
//
// It never admits more than the script would. Order requests by their
// HINCRBY: each one's view holds every request before it (the HINCRBY reply
// is exact for the current bucket, and HGETALL runs after it), and possibly
// some after it, which only makes the view larger. A rejected request
// counts until its increment is taken back, which can make a concurrent
// request near the limit be rejected too: the limiter errs strict, never
// loose. A burst at the limit is admitted exactly: no request is rejected
// before the limit is reached, so none is counted in error before then.

type windowOp struct {
	key, field string
	cost       int64
	ttl        time.Duration
	incr       *redis.IntCmd
	all        *redis.MapStringStringCmd
	expire     *redis.BoolCmd
}

func (o *windowOp) queue(ctx context.Context, pipe redis.Pipeliner) {
	o.incr = pipe.HIncrBy(ctx, o.key, o.field, o.cost)
	o.all = pipe.HGetAll(ctx, o.key)
	o.expire = pipe.PExpire(ctx, o.key, o.ttl)
}

// err is the first error among the op's replies.
func (o *windowOp) err() error {
	for _, err := range []error{o.incr.Err(), o.all.Err(), o.expire.Err()} {
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *windowOp) done(context.Context, *Store) {}

// allowWindow decides a sliding_window request.
func (s *Store) allowWindow(ctx context.Context, p *limiter.Policy, storeKey string, limit, cost int64, now int64, rec *recordArgs) (limiter.Decision, error) {
	win := limiter.WindowOf(p, time.Microsecond)
	nowUS := now / 1000
	c := nowUS / win.Size
	name := s.keyName(p, storeKey)
	o := &windowOp{key: name, field: strconv.FormatInt(c, 10), cost: cost,
		ttl: time.Duration(int64(p.Buckets)+1)*p.BucketSize() + time.Second}
	s.batch.do(o, rec)
	if err := o.err(); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_window: %w", err)
	}
	mine, all := o.incr.Val(), o.all.Val()
	// The others: every bucket but the current one as read, and the
	// current one as it was just before this request.
	buckets := make([]limiter.Bucket, 0, len(all))
	for f, v := range all {
		ix, err1 := strconv.ParseInt(f, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil || ix == c {
			continue
		}
		buckets = append(buckets, limiter.Bucket{Index: ix, Count: n})
	}
	buckets = append(buckets, limiter.Bucket{Index: c, Count: mine - cost})
	v := win.View(buckets, nowUS)
	d := limiter.Decision{Limit: limit}
	if win.Fits(v, limit, cost) {
		v.Inside += cost
		v.Newest = c
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: nowUS * 1000}
		win.Fill(&d, v, nowUS, limit)
		return d, nil
	}
	d.RetryAfter = win.RetryAfter(buckets, nowUS, limit, cost)
	win.Fill(&d, v, nowUS, limit)
	pipe := s.client.Pipeline()
	pipe.HIncrBy(ctx, name, o.field, -cost)
	pipe.Incr(ctx, name+":rej")
	pipe.PExpire(ctx, name+":rej", p.Window)
	if _, err := pipe.Exec(ctx); err != nil {
		return d, fmt.Errorf("redis sliding_window: taking back a rejected request: %w", err)
	}
	return d, nil
}
