package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// sliding_window runs on three plain pipelined commands, not a script:
// HINCRBY on the current bucket, HGETALL of the key's buckets and PEXPIRE,
// and a second round trip (HINCRBY back, INCR of the rejected count) only
// when the request is rejected. A script costs Redis several times as much
// CPU.
//
// It never admits more than the script would. Order requests by their
// HINCRBY: each one's view holds every request before it (the HINCRBY reply
// is exact for the current bucket, and HGETALL runs after it), and possibly
// some after it, which only makes the view larger. A rejected request
// counts until its increment is taken back, which can make a concurrent
// request near the limit be rejected too: the limiter errs strict, never
// loose. A burst at the limit is admitted exactly: no request is rejected
// before the limit is reached, so none is counted in error before then.
//
// Buckets that left the window are deleted lazily (trimWindow): the HGETALL
// reply shows them, and a request that finds more than buckets+2 fields
// (the window's buckets and one ahead) deletes the stale ones, with an HDEL
// sent after the decision rather than before it. A key active for days
// keeps at most buckets+2 fields, one more while that HDEL is on its way,
// and most decisions send no HDEL at all.

type windowOp struct {
	key, field string
	cost       int64
	ttl        time.Duration
	incr       *redis.IntCmd
	all        *redis.SliceCmd
	expire     *redis.BoolCmd
}

func (o *windowOp) queue(ctx context.Context, pipe redis.Pipeliner) {
	o.incr = pipe.HIncrBy(ctx, o.key, o.field, o.cost)
	// HGETALL as a flat slice: a map per decision costs more to build.
	o.all = redis.NewSliceCmd(ctx, "hgetall", o.key)
	_ = pipe.Process(ctx, o.all)
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

// windowMargin is how long a sliding_window hash outlives its newest
// bucket's window, for clocks that differ a little.
const windowMargin = 10 * time.Millisecond

// windowTrim returns the fields that a batched-mode flush in bucket c
// deletes (batched.go), so that a key active for days keeps O(buckets)
// fields although the flush does not read the hash first.
//
// A hash lives windowTTL after its last write. With
// e = ceil(windowMargin/bucket), when a flush lands in bucket c and every
// write before it was a flush too, the previous one landed in bucket
// c-k-1-e or later and had already deleted everything before its own
// window: only buckets c-2k-1-e..c-k-1 can be stale. The flush deletes them
// (one more, for a writer whose clock is a bucket behind), in the same round
// trip. Older fields, which a decision's lazy trim may leave in a hash that
// both modes write, go with the next decision that finds the hash above
// its cap (trimWindow).
func windowTrim(p *limiter.Policy, c int64) (stale []any) {
	b := p.BucketSize()
	k := int64(p.Buckets)
	e := int64((windowMargin + b - 1) / b)
	tk := trimKey{b, k, c}
	last := lastTrims(b, k)
	if t := last.Load(); t != nil && t.trimKey == tk {
		return t.stale
	}
	from, to := c-2*k-2-e, c-k-1
	stale = make([]any, 0, to-from+1)
	for ix := from; ix <= to; ix++ {
		stale = append(stale, strconv.FormatInt(ix, 10))
	}
	last.Store(&trimList{tk, stale})
	return stale
}

// trimCache keeps, per bucket size and bucket count, the last list of
// stale fields built: every key of a policy shares it for a whole bucket
// interval.
var trimCache sync.Map // trimShape -> *atomic.Pointer[trimList]

type trimShape struct {
	bucket time.Duration
	k      int64
}

func lastTrims(b time.Duration, k int64) *atomic.Pointer[trimList] {
	if v, ok := trimCache.Load(trimShape{b, k}); ok {
		return v.(*atomic.Pointer[trimList])
	}
	v, _ := trimCache.LoadOrStore(trimShape{b, k}, new(atomic.Pointer[trimList]))
	return v.(*atomic.Pointer[trimList])
}

type trimKey struct {
	bucket time.Duration
	k, c   int64
}

type trimList struct {
	trimKey
	stale []any // read-only once stored
}

// allowWindow decides a sliding_window request.
func (s *Store) allowWindow(ctx context.Context, p *limiter.Policy, storeKey string, limit, cost int64, now int64) (limiter.Decision, error) {
	win := algo.WindowOf(p, time.Microsecond)
	nowUS := now / 1000
	c := nowUS / win.Size
	name := s.keyName(p, storeKey)
	k := int64(p.Buckets)
	o := &windowOp{key: name, field: bucketField(c), cost: cost, ttl: windowTTL(p)}
	if err := s.batch.do(ctx, o); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_window: %w", err)
	}
	if err := o.err(); err != nil {
		return limiter.Decision{}, fmt.Errorf("redis sliding_window: %w", err)
	}
	// The others: every bucket but the current one as read, and the
	// current one as it was just before this request.
	var buf [24]algo.Bucket
	var staleBuf [8]any
	buckets, stale := buf[:0], staleBuf[:0]
	all := o.all.Val()
	for i := 0; i+1 < len(all); i += 2 {
		f, _ := all[i].(string)
		v, _ := all[i+1].(string)
		ix, err1 := strconv.ParseInt(f, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		switch {
		case f == o.field || (err1 == nil && ix > c+1):
			// The current bucket (counted below), or one further ahead
			// than a clock a little ahead writes: ignored, as HMGET of
			// c-k..c+1 used to.
		case err1 != nil || err2 != nil || ix < c-k:
			// Not a bucket (written by hand or by another program), or
			// one that left the window.
			stale = append(stale, f)
		default:
			buckets = append(buckets, algo.Bucket{Index: ix, Count: n})
		}
	}
	if len(stale) > 0 && int64(len(all)/2) > k+2 {
		s.trimWindow(name, stale)
	}
	buckets = append(buckets, algo.Bucket{Index: c, Count: o.incr.Val() - cost})
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
	if err := s.takeBack(ctx, p, name, o.field, cost); err != nil {
		return d, fmt.Errorf("redis sliding_window: %w", err)
	}
	return d, nil
}

// windowTTL is how long a sliding_window hash lives after its last write:
// k+1 buckets (the window of bucket c needs buckets c-k..c) and
// windowMargin.
func windowTTL(p *limiter.Policy) time.Duration {
	return time.Duration(p.Buckets+1)*p.BucketSize() + windowMargin
}

// bucketField is the hash field of bucket c. Every key of every policy
// shares the last one built, for a whole bucket interval.
func bucketField(c int64) string {
	if f := lastField.Load(); f != nil && f.c == c {
		return f.name
	}
	f := &fieldName{c, strconv.FormatInt(c, 10)}
	lastField.Store(f)
	return f.name
}

type fieldName struct {
	c    int64
	name string
}

var lastField atomic.Pointer[fieldName]

// trimWindow deletes the stale fields of a sliding_window hash, found by
// the decision that saw them, without making anyone wait: the HDEL goes in
// a later pipeline. It is best effort and safe to lose (the next request
// that finds the hash above its cap deletes them), and to repeat: the
// fields are gone from every window that could still read them. One trim
// per hash is on its way at a time. A server that refuses the HDEL (an ACL
// without it) is reported by Ping until a trim succeeds: the hashes would
// grow with every bucket.
func (s *Store) trimWindow(name string, stale []any) {
	args := make([]any, 0, 2+len(stale))
	args = append(append(args, "hdel", name), stale...)
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	if s.trimsClosed {
		return // Close has waited for the trims: a late one is lost
	}
	if _, busy := s.trimming.LoadOrStore(name, struct{}{}); busy {
		return
	}
	s.trims.Add(1)
	go func() {
		defer s.trims.Done()
		defer s.trimming.Delete(name)
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		var cmd *redis.Cmd
		err := s.batch.do(ctx, &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) { cmd = pipe.Do(ctx, args...) }})
		if err == nil {
			err = cmd.Err()
		}
		remember(&s.trimRefused, err, isReply)
	}()
}

// takeBack undoes the charge of a rejected request on a counter kept in a
// hash field (sliding_window's bucket, fixed_window's window) and counts the
// rejection: the second round trip of a rejected request. It goes even when
// the caller has gone, since the units must not stay charged.
func (s *Store) takeBack(ctx context.Context, p *limiter.Policy, name, field string, cost int64) error {
	var back *redis.IntCmd
	tb := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) {
		back = pipe.HIncrBy(ctx, name, field, -cost)
		pipe.Incr(ctx, name+":rej")
		pipe.PExpire(ctx, name+":rej", p.Window)
	}}
	err := s.batch.do(context.WithoutCancel(ctx), tb)
	if err == nil {
		err = back.Err()
	}
	if err != nil {
		return fmt.Errorf("taking back a rejected request: %w", err)
	}
	return nil
}

// peekWindow reads a sliding_window key without counting.
func (s *Store) peekWindow(ctx context.Context, p *limiter.Policy, storeKey string, limit, now int64) (limiter.Usage, error) {
	u := limiter.Usage{Key: storeKey, Limit: limit}
	name := s.keyName(p, storeKey)
	var all *redis.MapStringStringCmd
	var rej *redis.StringCmd
	o := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) {
		all = pipe.HGetAll(ctx, name)
		rej = pipe.Get(ctx, name+":rej")
	}}
	if err := s.batch.do(ctx, o); err != nil {
		return u, err
	}
	if err := all.Err(); err != nil {
		return u, err
	}
	n, err := rej.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return u, err
	}
	win := algo.WindowOf(p, time.Microsecond)
	nowUS := now / 1000
	var d limiter.Decision
	win.Fill(&d, win.View(parseBuckets(all.Val(), nil, -1), nowUS), nowUS, limit)
	u.Count, u.Remaining, u.ResetAfter, u.Rejected = d.Count, d.Remaining, d.ResetAfter, n
	return u, nil
}

// parseBuckets reads the fields of a sliding_window hash into buf,
// skipping field skip and anything that is not a bucket.
func parseBuckets(all map[string]string, buf []algo.Bucket, skip int64) []algo.Bucket {
	for f, v := range all {
		ix, err1 := strconv.ParseInt(f, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil || ix == skip {
			continue
		}
		buf = append(buf, algo.Bucket{Index: ix, Count: n})
	}
	return buf
}
