-- Reserves one send of a bot to one chat under both limits at once (GCRA, the generic cell
-- rate algorithm), shared by every replica of the bot.
--
-- Each limiter is a hash: t = the theoretical arrival time (TAT) of the next send, in µs;
-- h = a hold (after a 429): nothing goes before it, in ms. A send is allowed when
-- now >= TAT - tolerance, and then TAT = max(TAT, now) + interval. A hold acts as a TAT of
-- at least h + tolerance (the bucket is empty at h and refills at the rate after it).
-- Invariant: a send is taken from both limiters or from neither.
--
-- KEYS[1] the bot's limiter (its free or its paid-broadcast budget)
-- KEYS[2] the chat's limiter
-- ARGV[1] now, in µs: the caller's clock, or the time of the slot it booked (a sender woken
--         late asks for the slot by its time, so the lateness does not push the schedule)
-- ARGV[2] the bot's emission interval (µs; 0 = no rate limit, holds still apply)
-- ARGV[3] the bot's burst tolerance (µs)
-- ARGV[4] the chat's emission interval (µs; 0 = no rate limit, holds still apply)
-- ARGV[5] the chat's burst tolerance (µs)
--
-- Returns {0, 0, 0} if the send may go now (both slots taken), else {wait, bot_wait, bot_at}
-- (nothing taken): the longer wait of the two limiters and the bot limiter's alone, in ms, and
-- the bot limiter's next free slot in µs (0 if it does not hold the send back).
-- A limiter expires once it no longer differs from a fresh one (plus a margin).

local now = tonumber(ARGV[1])

-- The earliest time (µs) a send may go, and the TAT to store if it goes now.
local function check(key, interval, tolerance)
  local v = redis.call("HMGET", key, "t", "h")
  local t = tonumber(v[1]) or 0
  local h = (tonumber(v[2]) or 0) * 1000
  if interval == 0 then
    return h, nil
  end
  local tat = math.max(t, h + tolerance)
  return tat - tolerance, math.max(tat, now) + interval
end

local function store(key, tat, tolerance)
  local h = (tonumber(redis.call("HGET", key, "h")) or 0) * 1000
  redis.call("HSET", key, "t", string.format("%.0f", tat))
  local ttl = math.ceil((math.max(tat, h + tolerance) - now) / 1000) + 1000
  if redis.call("PTTL", key) < ttl then
    redis.call("PEXPIRE", key, ttl)
  end
end

local bi, bt = tonumber(ARGV[2]), tonumber(ARGV[3])
local ci, ct = tonumber(ARGV[4]), tonumber(ARGV[5])
local bot_at, bot_tat = check(KEYS[1], bi, bt)
local chat_at, chat_tat = check(KEYS[2], ci, ct)
local at = math.max(bot_at, chat_at)
if at > now then
  local bot_next = 0
  if bot_at > now then
    bot_next = bot_at
  end
  return {math.ceil((at - now) / 1000), math.max(0, math.ceil((bot_at - now) / 1000)), bot_next}
end
if bot_tat then
  store(KEYS[1], bot_tat, bt)
end
if chat_tat then
  store(KEYS[2], chat_tat, ct)
end
return {0, 0, 0}
