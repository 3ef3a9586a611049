-- The fleet's media budget (hot/blobs.rs): bytes of media that may sit in Redis at once, well
-- below maxmemory, shared by every replica of every bot. One reservation per blob.
--
-- KEYS[1] bytes reserved now (integer)
-- KEYS[2] each reservation's bytes (hash: reservation id → bytes)
-- KEYS[3] each reservation's deadline (sorted set: reservation id → ms)
-- KEYS[4] the user's bytes in the current window (integer with PX; "reserve" only)
-- ARGV[1] "reserve", "release" or "used"
-- ARGV[2] now, ms
-- ARGV[3] the reservation id                       (reserve, release)
-- ARGV[4] bytes                                    (reserve)
-- ARGV[5] the reservation's deadline, ms           (reserve)
-- ARGV[6] the fleet's budget, bytes                (reserve)
-- ARGV[7] the user's cap per window, bytes; 0: none (reserve)
-- ARGV[8] the user's window, ms                    (reserve)
--
-- Invariant: KEYS[1] is the sum of KEYS[2]. A reservation whose holder died (a crash between
-- the download and the blob's deletion) is freed once its deadline passes — by whichever call
-- comes next — so budget never leaks for longer than one blob may live.
--
-- reserve → 1 granted (or already held: its deadline moves, nothing is charged again),
--           0 over the fleet's budget, -1 over the user's cap (nothing charged either way)
-- release → 1 freed, 0 not held
-- used    → the bytes reserved now

local op, now = ARGV[1], tonumber(ARGV[2])

local expired = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", now, "LIMIT", 0, 256)
for _, id in ipairs(expired) do
  local bytes = tonumber(redis.call("HGET", KEYS[2], id)) or 0
  redis.call("DECRBY", KEYS[1], bytes)
  redis.call("HDEL", KEYS[2], id)
  redis.call("ZREM", KEYS[3], id)
end

local used = tonumber(redis.call("GET", KEYS[1])) or 0
if op == "used" then
  return math.max(used, 0)
end

local id = ARGV[3]
if op == "release" then
  local bytes = redis.call("HGET", KEYS[2], id)
  if not bytes then
    return 0
  end
  redis.call("DECRBY", KEYS[1], tonumber(bytes))
  redis.call("HDEL", KEYS[2], id)
  redis.call("ZREM", KEYS[3], id)
  return 1
end

-- reserve
local bytes, deadline = tonumber(ARGV[4]), tonumber(ARGV[5])
local budget, user_cap, window = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if redis.call("HEXISTS", KEYS[2], id) == 1 then
  redis.call("ZADD", KEYS[3], deadline, id)
  return 1
end
if math.max(used, 0) + bytes > budget then
  return 0
end
if user_cap > 0 then
  local spent = tonumber(redis.call("GET", KEYS[4])) or 0
  if spent + bytes > user_cap then
    return -1
  end
  redis.call("INCRBY", KEYS[4], bytes)
  if redis.call("PTTL", KEYS[4]) < 0 then
    redis.call("PEXPIRE", KEYS[4], window)
  end
end
redis.call("INCRBY", KEYS[1], bytes)
redis.call("HSET", KEYS[2], id, bytes)
redis.call("ZADD", KEYS[3], deadline, id)
return 1
