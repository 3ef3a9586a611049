-- One matching attempt, atomically: a user is never in two chats and never matched twice,
-- whatever the number of replicas, because every read and the claim happen in this script.
--
-- KEYS[1] the pool's key prefix (carries the pool's hash tag; every key below derives from it)
-- ARGV[1] seeker member ("<bot>:<user id>")
-- ARGV[2] seeker gender (m, f, o)
-- ARGV[3] wanted partner gender (m, f, o, or * for any)
-- ARGV[4] "1" if the seeker is VIP
-- ARGV[5] now, in milliseconds
-- ARGV[6] recent-partner window, in milliseconds
-- ARGV[7] how many waiting users to look at per queue (bounds the script's run time)
--
-- Returns {"in_chat", partner} | {"matched", partner} | {"queued"}

local p = KEYS[1]
local me, gender, want, vip = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == "1"
local now, window, scan = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local current = redis.call("GET", p .. "pair:" .. me)
if current then
  return {"in_chat", current}
end

local function compatible(other)
  local prof = redis.call("HMGET", p .. "u:" .. other, "g", "w")
  local og, ow = prof[1], prof[2]
  if not og then
    return false
  end
  if want ~= "*" and want ~= og then
    return false
  end
  if ow ~= "*" and ow ~= gender then
    return false
  end
  -- Not again within the window (recorded both ways when a chat starts).
  local until_ms = redis.call("ZSCORE", p .. "recent:" .. me, other)
  if until_ms and tonumber(until_ms) > now then
    return false
  end
  -- Never with someone either side blocked or reported.
  if redis.call("SISMEMBER", p .. "blocked:" .. me, other) == 1 then
    return false
  end
  if redis.call("SISMEMBER", p .. "blocked:" .. other, me) == 1 then
    return false
  end
  return true
end

for _, tier in ipairs({"vip", "free"}) do
  local queue = p .. "q:" .. tier
  local waiting = redis.call("ZRANGE", queue, 0, scan - 1)
  for _, other in ipairs(waiting) do
    if other ~= me then
      if redis.call("EXISTS", p .. "pair:" .. other) == 1 then
        -- Stale entry (matched elsewhere without leaving the queue): clean it up.
        redis.call("ZREM", queue, other)
      elseif compatible(other) then
        -- The claim: both sides, in one step.
        redis.call("SET", p .. "pair:" .. me, other)
        redis.call("SET", p .. "pair:" .. other, me)
        for _, t in ipairs({"vip", "free"}) do
          redis.call("ZREM", p .. "q:" .. t, me, other)
        end
        if window > 0 then
          redis.call("ZADD", p .. "recent:" .. me, now + window, other)
          redis.call("ZADD", p .. "recent:" .. other, now + window, me)
          redis.call("ZREMRANGEBYSCORE", p .. "recent:" .. me, "-inf", now)
          redis.call("ZREMRANGEBYSCORE", p .. "recent:" .. other, "-inf", now)
          redis.call("PEXPIRE", p .. "recent:" .. me, window)
          redis.call("PEXPIRE", p .. "recent:" .. other, window)
        end
        return {"matched", other}
      end
    end
  end
end

-- Nobody compatible is waiting: wait (keeping the original place if already waiting).
redis.call("HSET", p .. "u:" .. me, "g", gender, "w", want)
local mine = vip and "vip" or "free"
local other_tier = vip and "free" or "vip"
redis.call("ZREM", p .. "q:" .. other_tier, me)
redis.call("ZADD", p .. "q:" .. mine, "NX", now, me)
return {"queued"}
