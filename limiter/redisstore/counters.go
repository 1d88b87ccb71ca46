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
// only when a counter is created or deleted. The counters also implement
// limiter.CounterWriter: an idempotency record is a hash beside its
// counter's, in the same hash slot, written by the same script as the
// change, with a TTL of limiter.IdempotencyTTL.
func (s *Store) Counters() limiter.Counters { return (*counters)(s) }

var _ limiter.CounterWriter = (*counters)(nil)

type counters Store

func (c *counters) key(name string) string { return c.prefix + "counter:{" + name + "}" }
func (c *counters) recordKey(name, idempotencyKey string) string {
	return c.prefix + "idem:{" + name + "}:" + idempotencyKey
}
func (c *counters) names() string { return c.prefix + "counters" }

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

// counterWriteScript applies one counter write, under an idempotency
// record when KEYS[2] is given.
//
// KEYS = {counter hash[, record hash]};
// ARGV = {op, fingerprint, record TTL in ms, then for add: delta;
// for set: value, min, max (” for no bound)}.
//
// Returns {'reused'} when the record holds another fingerprint; otherwise
// {status, value, min, max, created, replayed}, with status 'ok', 'max',
// 'min' or 'int64' (a refused step: value is the unchanged value) or
// 'deleted'. A replay returns the recorded answer and changes nothing.
//
// Lua numbers are doubles, so bounds are compared as the exact decimal
// strings Redis keeps, and overflow is detected by HINCRBY's own error.
var counterWriteScript = redis.NewScript(`
local function cmp(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then if na then return -1 else return 1 end end
  local r = 0
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  elseif a ~= b then
    if a < b then r = -1 else r = 1 end
  end
  if na then r = -r end
  return r
end
if KEYS[2] then
  local r = redis.call('HMGET', KEYS[2], 'f', 's', 'v', 'min', 'max')
  if r[1] then
    if r[1] ~= ARGV[2] then return {'reused'} end
    return {r[2], r[3] or '0', r[4] or '', r[5] or '', 0, 1}
  end
end
local status, v, lo, hi, created = 'ok', '0', '', '', 0
local op = ARGV[1]
if op == 'set' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'v', ARGV[4])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'min', ARGV[5]) end
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'max', ARGV[6]) end
  v, lo, hi = ARGV[4], ARGV[5], ARGV[6]
elseif op == 'delete' then
  redis.call('DEL', KEYS[1])
  status = 'deleted'
else
  local h = redis.call('HMGET', KEYS[1], 'v', 'min', 'max')
  local old = h[1] or '0'
  lo, hi = h[2] or '', h[3] or ''
  if not h[1] then created = 1 end
  local ok = redis.pcall('HINCRBY', KEYS[1], 'v', ARGV[4])
  if type(ok) == 'table' and ok.err then
    status = 'int64'
  else
    v = redis.call('HGET', KEYS[1], 'v')
    -- A server that wraps instead of refusing (some fakes) still cannot
    -- pass: a positive step must raise the value and a negative one lower it.
    local d = tonumber(ARGV[4])
    if (d > 0 and cmp(v, old) <= 0) or (d < 0 and cmp(v, old) >= 0) then status = 'int64' end
    if h[3] and cmp(v, h[3]) > 0 then status = 'max' end
    if h[2] and cmp(v, h[2]) < 0 then status = 'min' end
  end
  if status ~= 'ok' then
    if created == 1 then redis.call('DEL', KEYS[1]) elseif v ~= old then redis.call('HSET', KEYS[1], 'v', old) end
    v, created = old, 0
  end
end
if KEYS[2] then
  redis.call('HSET', KEYS[2], 'f', ARGV[2], 's', status, 'v', v, 'min', lo, 'max', hi)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return {status, v, lo, hi, created, 0}
`)

// write runs counterWriteScript and keeps the index of names.
func (c *counters) write(ctx context.Context, op limiter.CounterOp, key string) (limiter.CounterResult, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	keys := []string{c.key(op.Name)}
	if key != "" {
		keys = append(keys, c.recordKey(op.Name, key))
	}
	args := []any{string(op.Kind), op.Fingerprint(), limiter.IdempotencyTTL.Milliseconds()}
	switch op.Kind {
	case limiter.OpAdd:
		args = append(args, op.Delta)
	case limiter.OpSet:
		args = append(args, op.Counter.Value, bound(op.Counter.Min), bound(op.Counter.Max))
	}
	v, err := counterWriteScript.Run(ctx, c.client, keys, args...).Slice()
	if err != nil {
		return limiter.CounterResult{}, fmt.Errorf("redis counter %s: %w", op.Kind, err)
	}
	if len(v) == 1 && v[0] == "reused" {
		return limiter.CounterResult{}, limiter.ErrIdempotencyKeyReused
	}
	if len(v) != 6 {
		return limiter.CounterResult{}, fmt.Errorf("redis counter %s: unexpected reply %v", op.Kind, v)
	}
	status, _ := v[0].(string)
	created, _ := v[4].(int64)
	replayed, _ := v[5].(int64)
	var res limiter.CounterResult
	res.Replayed = replayed == 1
	if status != "deleted" {
		if res.Counter, err = c.decode(op.Name, v[1], v[2], v[3]); err != nil {
			return res, err
		}
	}
	switch status {
	case "ok":
		if created == 1 || op.Kind == limiter.OpSet || res.Replayed {
			// A replay adds the name again in case the first call was cut
			// off between its change and this step; List skips names
			// without a counter.
			err = c.client.SAdd(ctx, c.names(), op.Name).Err()
		}
	case "deleted":
		if !res.Replayed {
			err = c.client.SRem(ctx, c.names(), op.Name).Err()
		}
	case "max", "min", "int64":
		res.Bound = status
	default:
		return res, fmt.Errorf("redis counter %s: unexpected status %q", op.Kind, status)
	}
	if err != nil {
		return res, fmt.Errorf("redis counter index: %w", err)
	}
	return res, nil
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

func (c *counters) Add(ctx context.Context, name string, delta int64) (limiter.Counter, error) {
	res, err := c.Write(ctx, limiter.CounterOp{Kind: limiter.OpAdd, Name: name, Delta: delta}, "")
	if err != nil {
		return limiter.Counter{}, err
	}
	return res.Counter, res.Err()
}

func (c *counters) Get(ctx context.Context, name string) (v limiter.Counter, err error) {
	err = (*Store)(c).guard(ctx, func() error { v, err = c.get(ctx, name); return err })
	return v, err
}

func (c *counters) Set(ctx context.Context, in limiter.Counter) (limiter.Counter, error) {
	res, err := c.Write(ctx, limiter.CounterOp{Kind: limiter.OpSet, Name: in.Name, Counter: in}, "")
	return res.Counter, err
}

func (c *counters) Delete(ctx context.Context, name string) error {
	_, err := c.Write(ctx, limiter.CounterOp{Kind: limiter.OpDelete, Name: name}, "")
	return err
}

// Write implements limiter.CounterWriter.
func (c *counters) Write(ctx context.Context, op limiter.CounterOp, key string) (res limiter.CounterResult, err error) {
	if err := op.Check(); err != nil {
		return res, err
	}
	if key != "" && !limiter.ValidIdempotencyKey(key) {
		return res, errors.New("idempotency key must be 1 to 255 printable ASCII characters")
	}
	err = (*Store)(c).guard(ctx, func() error { res, err = c.write(ctx, op, key); return err })
	return res, err
}

func (c *counters) List(ctx context.Context) (v []limiter.Counter, err error) {
	err = (*Store)(c).guard(ctx, func() error { v, err = c.list(ctx); return err })
	return v, err
}
