package redisstore

import "github.com/redis/go-redis/v9"

// The scripts take time from ARGV (microseconds, from the store's clock,
// which is calibrated against the server's TIME). Every script touches the keys of one hash slot: a
// limiter key and its ":rej" companion share a hash tag.
//
// Return shape of the limiter scripts:
//   {allowed (0|1), count, remaining, reset_after_us, retry_after_us, rejected}

// Numbers that need more than 14 digits (times in microseconds) are passed
// in as strings built by Go and never formatted by Lua.

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

// refundWindowScript takes cost back from one field of a hash, if the
// field is still there: KEYS = {hash}; ARGV = {field, cost, ”}.
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

// gcraScript: KEYS = {tat, rej}; ARGV = {now_us, interval_us, burst, cost,
// mode, window_ms, window_us}. The key holds the theoretical arrival time
// of the next unit, in microseconds; a request fits when, with its units
// added, the arrival time is at most burst intervals ahead of now. Its
// arithmetic is limiter.GCRA's: GCRA needs max(tat, now) read and written
// in one step, which plain commands cannot do, so it stays a script.
var gcraScript = redis.NewScript(`
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst, cost, charge = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local rejected = tonumber(redis.call('GET', KEYS[2]) or '0')
local allowed, retry = 0, 0
if charge then
  local new = tat + interval * cost
  local allow_at = new - interval * burst
  if now >= allow_at then
    allowed = 1
    tat = new
    redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1)
  else
    rejected = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
    retry = allow_at - now
    if cost > burst then retry = tonumber(ARGV[7]) end
  end
end
local used = tat - now
local count = math.floor((used + interval - 1) / interval)
return {allowed, count, math.max(0, burst - count), used, retry, rejected}
`)

// gcraRefundScript moves a gcra arrival time back by cost intervals, but
// not before now, deleting the key when nothing is left.
// KEYS = {tat}; ARGV = {now_us, interval_us, cost}.
var gcraRefundScript = redis.NewScript(`
local tat = redis.call('GET', KEYS[1])
if not tat then return 0 end
local now = tonumber(ARGV[1])
local new = tonumber(tat) - tonumber(ARGV[2]) * tonumber(ARGV[3])
if new <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1)
end
return 1
`)

var allScripts = []*redis.Script{gcraScript, slidingLogScript, refundWindowScript, gcraRefundScript}
