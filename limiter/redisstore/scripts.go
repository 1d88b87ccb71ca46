package redisstore

import "github.com/redis/go-redis/v9"

// The scripts take time from ARGV (microseconds, from the store's clock,
// which is calibrated against the server's TIME) and mirror the algorithms
// of limiter/memstore. Every script touches the keys of one hash slot: a
// limiter key and its ":rej" companion share a hash tag.
//
// Return shape of the limiter scripts:
//   {allowed (0|1), count, remaining, reset_after_us, retry_after_us, rejected}

// Numbers that need more than 14 digits (times in microseconds) are passed
// in as strings built by Go and never formatted by Lua.

// slidingWindowScript: KEYS = {hash, rej}; ARGV = {now_us, bucket_us, buckets,
// limit, cost, mode (1 charge, 0 peek), ttl_ms, window_ms, bucket_index}.
var slidingWindowScript = redis.NewScript(`
local now, b, k = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, cost, charge = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local c = tonumber(ARGV[9])
local all = redis.call('HGETALL', KEYS[1])
local idx, cnt = {}, {}
local inside, oldest, newest = 0, 0, -1
for i = 1, #all, 2 do
  local ix, n = tonumber(all[i]), tonumber(all[i + 1])
  if ix < c - k then
    if charge then redis.call('HDEL', KEYS[1], all[i]) end
  elseif n > 0 then
    idx[#idx + 1], cnt[#cnt + 1] = ix, n
    if ix > c - k then inside = inside + n else oldest = oldest + n end
    if ix > newest then newest = ix end
  end
end
local cap = limit + math.floor(limit / k)
local frac = ((c + 1) * b - now) / b
local est = inside + oldest * frac
local rejected = tonumber(redis.call('GET', KEYS[2]) or '0')
local allowed, retry = 0, 0
if charge then
  if est + cost <= limit + 1e-9 and inside + oldest + cost <= cap then
    allowed = 1
    redis.call('HINCRBY', KEYS[1], ARGV[9], cost)
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
    inside, est, newest = inside + cost, est + cost, c
  else
    rejected = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[8])
    retry = (k + 1) * b
    if cost <= limit then
      for j = 0, k + 1 do
        local cj = c + j
        local start = math.max(now, cj * b)
        local ins, old = 0, 0
        for i = 1, #idx do
          if idx[i] > cj - k then ins = ins + cnt[i] elseif idx[i] == cj - k then old = old + cnt[i] end
        end
        local room = limit - cost - ins
        if ins + old + cost <= cap and room >= 0 then
          local t = start
          if old > 0 and room < old then
            t = math.max(start, (cj + 1) * b - math.floor(room / old * b))
          end
          if t < (cj + 1) * b then retry = t - now; break end
        end
      end
    end
  end
end
local count = math.ceil(est - 1e-9)
local remaining = math.max(0, math.min(math.floor(limit - est + 1e-9), cap - inside - oldest))
local reset = 0
if newest >= 0 then reset = (newest + k + 1) * b - now end
return {allowed, count, remaining, reset, retry, rejected}
`)

// slidingLogScript: KEYS = {zset, rej}; ARGV = {now_us, window_us, limit,
// cost, mode, ttl_ms, window_ms, member_prefix, now_us - window_us}. One
// member per unit, scored by its time. The first write of each branch is
// one that Redis refuses when it is out of memory (ZADD, INCR): a script
// may go on writing past maxmemory once it has written.
var slidingLogScript = redis.NewScript(`
local now, w = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, cost, charge = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local after = '(' .. ARGV[9]
local count = redis.call('ZCOUNT', KEYS[1], after, '+inf')
local rejected = tonumber(redis.call('GET', KEYS[2]) or '0')
local allowed, retry = 0, 0
if charge then
  if count + cost <= limit then
    allowed = 1
    local args = {}
    for i = 1, cost do
      args[#args + 1] = ARGV[1]
      args[#args + 1] = ARGV[8] .. ':' .. i
    end
    redis.call('ZADD', KEYS[1], unpack(args))
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[9])
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    count = count + cost
  else
    rejected = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
    retry = w
    if cost <= limit then
      local need = count + cost - limit
      local e = redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'WITHSCORES', 'LIMIT', need - 1, 1)
      if #e == 2 then retry = tonumber(e[2]) + w - now end
    end
  end
end
local reset = 0
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 2 and count > 0 then reset = math.max(0, tonumber(last[2]) + w - now) end
return {allowed, count, math.max(0, limit - count), reset, retry, rejected}
`)

// fixedWindowScript: KEYS = {hash, rej}; ARGV = {now_us, window_us, limit,
// cost, mode, window_ms, window_start_us}.
var fixedWindowScript = redis.NewScript(`
local now, w = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, cost, charge = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local start = tonumber(ARGV[7])
local h = redis.call('HMGET', KEYS[1], 's', 'c')
local count = 0
if tonumber(h[1]) == start then count = tonumber(h[2]) end
local rejected = tonumber(redis.call('GET', KEYS[2]) or '0')
local allowed, retry = 0, 0
if charge then
  if count + cost <= limit then
    allowed = 1
    count = count + cost
    redis.call('HSET', KEYS[1], 's', ARGV[7], 'c', count)
    redis.call('PEXPIRE', KEYS[1], math.ceil((start + w - now) / 1000) + 1)
  else
    rejected = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
    retry = start + w - now
    if cost > limit then retry = w end
  end
end
local reset = 0
if count > 0 then reset = start + w - now end
return {allowed, count, math.max(0, limit - count), reset, retry, rejected}
`)

// refundWindowScript takes cost back from one field of a hash:
// KEYS = {hash}; ARGV = {field, cost, expected_start (fixed window) or ”}.
var refundWindowScript = redis.NewScript(`
if ARGV[3] ~= '' then
  if redis.call('HGET', KEYS[1], 's') ~= ARGV[3] then return 0 end
end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local n = math.max(0, tonumber(v) - tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], n)
return 1
`)

// gcraRefundScript moves a redis_rate theoretical arrival time back by
// cost emission intervals, in redis_rate's own format (seconds since
// 2017-01-01 as a float), deleting the key when nothing is left.
// KEYS = {rate key}; ARGV = {interval_seconds, cost}.
var gcraRefundScript = redis.NewScript(`
local tat = redis.call('GET', KEYS[1])
if not tat then return 0 end
local t = redis.call('TIME')
local now = (t[1] - 1483228800) + (t[2] / 1000000)
local new = tonumber(tat) - tonumber(ARGV[1]) * tonumber(ARGV[2])
if new <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], new, 'EX', math.ceil(new - now))
end
return 1
`)

var allScripts = []*redis.Script{slidingWindowScript, slidingLogScript, fixedWindowScript, refundWindowScript, gcraRefundScript}
