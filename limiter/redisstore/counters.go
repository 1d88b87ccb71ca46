package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
)

// Counters implements limiter.Store. Each counter is one hash (value and
// bounds) with no TTL; the set of names is kept in one set that is written
// only when a counter is created or deleted.
func (s *Store) Counters() limiter.Counters { return (*counters)(s) }

type counters Store

func (c *counters) key(name string) string { return c.prefix + "counter:{" + name + "}" }
func (c *counters) names() string          { return c.prefix + "counters" }

func (c *counters) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

func parseBound(s string) (*int64, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func bound(b *int64) string {
	if b == nil {
		return ""
	}
	return strconv.FormatInt(*b, 10)
}

func (c *counters) add(ctx context.Context, name string, delta int64) (limiter.Counter, error) {
	if !limiter.ValidCounterName(name) {
		return limiter.Counter{}, fmt.Errorf("counter name %q is not valid", name)
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	neg := "0"
	if delta != 0 {
		neg = strconv.FormatInt(-delta, 10) // |delta| <= MaxInt64 for every caller
	}
	v, err := counterAddScript.Run(ctx, c.client, []string{c.key(name)}, delta, neg).Slice()
	if err != nil {
		return limiter.Counter{}, fmt.Errorf("redis counter add: %w", err)
	}
	if len(v) != 5 {
		return limiter.Counter{}, fmt.Errorf("redis counter add: unexpected reply %v", v)
	}
	status, _ := v[0].(string)
	cur, err := c.decode(name, v[1], v[2], v[3])
	if err != nil {
		return cur, err
	}
	if status != "ok" {
		return cur, &limiter.BoundError{Name: name, Value: cur.Value, Bound: status}
	}
	if created, _ := v[4].(int64); created == 1 {
		if err := c.client.SAdd(ctx, c.names(), name).Err(); err != nil {
			return cur, fmt.Errorf("redis counter index: %w", err)
		}
	}
	return cur, nil
}

func (c *counters) decode(name string, value, lo, hi any) (limiter.Counter, error) {
	out := limiter.Counter{Name: name}
	vs, _ := value.(string)
	ls, _ := lo.(string)
	hs, _ := hi.(string)
	var err error
	if out.Value, err = strconv.ParseInt(vs, 10, 64); err != nil {
		return out, fmt.Errorf("counter %q: bad value %q", name, vs)
	}
	if out.Min, err = parseBound(ls); err != nil {
		return out, fmt.Errorf("counter %q: bad min %q", name, ls)
	}
	if out.Max, err = parseBound(hs); err != nil {
		return out, fmt.Errorf("counter %q: bad max %q", name, hs)
	}
	return out, nil
}

func (c *counters) get(ctx context.Context, name string) (limiter.Counter, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	v, err := c.client.HMGet(ctx, c.key(name), "v", "min", "max").Result()
	if err != nil {
		return limiter.Counter{}, fmt.Errorf("redis counter get: %w", err)
	}
	if v[0] == nil {
		return limiter.Counter{}, limiter.ErrNotFound
	}
	return c.decode(name, v[0], v[1], v[2])
}

func (c *counters) set(ctx context.Context, v limiter.Counter) (limiter.Counter, error) {
	if err := v.Check(); err != nil {
		return limiter.Counter{}, err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	err := counterSetScript.Run(ctx, c.client, []string{c.key(v.Name)}, v.Value, bound(v.Min), bound(v.Max)).Err()
	if err != nil {
		return limiter.Counter{}, fmt.Errorf("redis counter set: %w", err)
	}
	if err := c.client.SAdd(ctx, c.names(), v.Name).Err(); err != nil {
		return v, fmt.Errorf("redis counter index: %w", err)
	}
	return v, nil
}

func (c *counters) delete(ctx context.Context, name string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if err := c.client.Del(ctx, c.key(name)).Err(); err != nil {
		return fmt.Errorf("redis counter delete: %w", err)
	}
	if err := c.client.SRem(ctx, c.names(), name).Err(); err != nil {
		return fmt.Errorf("redis counter index: %w", err)
	}
	return nil
}

func (c *counters) list(ctx context.Context) ([]limiter.Counter, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*c.timeout)
	defer cancel()
	names, err := c.client.SMembers(ctx, c.names()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis counter list: %w", err)
	}
	sort.Strings(names)
	cmds := make([]*redis.SliceCmd, len(names))
	pipe := c.client.Pipeline()
	for i, n := range names {
		cmds[i] = pipe.HMGet(ctx, c.key(n), "v", "min", "max")
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("redis counter list: %w", err)
		}
	}
	out := make([]limiter.Counter, 0, len(names))
	for i, n := range names {
		v := cmds[i].Val()
		if len(v) != 3 || v[0] == nil {
			continue // deleted between the two reads
		}
		cv, err := c.decode(n, v[0], v[1], v[2])
		if err != nil {
			return nil, err
		}
		out = append(out, cv)
	}
	return out, nil
}

// The exported methods go through the store's circuit breaker.

func (c *counters) Add(ctx context.Context, name string, delta int64) (v limiter.Counter, err error) {
	err = (*Store)(c).guard(ctx, func() error { v, err = c.add(ctx, name, delta); return err })
	return v, err
}

func (c *counters) Get(ctx context.Context, name string) (v limiter.Counter, err error) {
	err = (*Store)(c).guard(ctx, func() error { v, err = c.get(ctx, name); return err })
	return v, err
}

func (c *counters) Set(ctx context.Context, in limiter.Counter) (v limiter.Counter, err error) {
	err = (*Store)(c).guard(ctx, func() error { v, err = c.set(ctx, in); return err })
	return v, err
}

func (c *counters) Delete(ctx context.Context, name string) error {
	return (*Store)(c).guard(ctx, func() error { return c.delete(ctx, name) })
}

func (c *counters) List(ctx context.Context) (v []limiter.Counter, err error) {
	err = (*Store)(c).guard(ctx, func() error { v, err = c.list(ctx); return err })
	return v, err
}
