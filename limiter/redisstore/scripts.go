package redisstore

import "github.com/redis/go-redis/v9"

// The scripts take time from ARGV (microseconds, from the store's clock,
// which is calibrated against the server's TIME). Every script touches the
// keys of one hash slot: a limiter key and its ":rej" companion share a
// hash tag. Times in microseconds need 16 digits: Lua's numbers (doubles)
// hold them exactly, and the scripts write them with %d, never with
// tostring (which would round them to 14 digits).
//
// Return shape of the gcra script:
//   {allowed (0|1), count, remaining, reset_after_us, retry_after_us, rejected}

// logAddScript adds a sliding_log request's members (ZADD first, so that a
// server out of memory refuses it), drops the members that left the window,
// sets the TTL and counts the window, in one step: KEYS = {zset};
// ARGV = {score_us, cutoff_us, ttl_ms, member...}. Returns the count.
var logAddScript = redis.NewScript(`
local args = {}
for i = 4, #ARGV do
  args[#args + 1] = ARGV[1]
  args[#args + 1] = ARGV[i]
end
redis.call('ZADD', KEYS[1], unpack(args))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')
`)

// refundWindowScript takes cost back from one field of a hash, if the
// field is still there: KEYS = {hash}; ARGV = {field, cost}.
var refundWindowScript = redis.NewScript(`
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
// in one step, which plain commands cannot do, so it stays a script. The
// reply's rejected count is read only in peek mode (mode 0); a charging
// call skips that read and answers 0, or the new count when it rejects.
var gcraScript = redis.NewScript(`
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst, cost, charge = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local rejected, allowed, retry = 0, 0, 0
if not charge then rejected = tonumber(redis.call('GET', KEYS[2]) or '0') end
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

// addRejectedOnceScript adds a process's batch of rejections, answered
// from its local cache, to a key's rejected count, once: the batch's
// number is remembered per process, so a batch sent again after a lost
// reply changes nothing. A process sends a new batch for a key only once
// Redis confirmed its last, so comparing with the last number suffices.
// KEYS = {rejected, last batch of this process}; ARGV = {n, batch, ttl_ms}.
var addRejectedOnceScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[2] then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
`)

// addBatchOnceScript adds a process's batch of batched-mode admissions
// (bucket fields and counts) and rejections to a key, once: as with
// addRejectedOnceScript, the batch's number is remembered per process, so
// a batch sent again after a lost reply changes nothing.
// KEYS = {buckets, rejected, last batch of this process};
// ARGV = {batch, buckets' ttl_ms, rejected's ttl_ms, rejected, field, count, field, count...}.
var addBatchOnceScript = redis.NewScript(`
if redis.call('GET', KEYS[3]) == ARGV[1] then return 0 end
for i = 5, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV >= 5 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if tonumber(ARGV[4]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', math.max(tonumber(ARGV[2]), tonumber(ARGV[3])))
return 1
`)

var allScripts = []*redis.Script{addRejectedOnceScript, addBatchOnceScript, gcraScript, logAddScript, refundWindowScript, gcraRefundScript}
