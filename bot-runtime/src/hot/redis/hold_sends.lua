-- Holds a bot's (and optionally one chat's) sends until a time, for every replica: after a 429
-- with retry_after. A hold never moves backwards (a shorter hold leaves a longer one in place).
-- See reserve_send.lua for the limiter layout (field h, in ms).
--
-- KEYS[1..n] the limiters to hold
-- ARGV[1] until, in milliseconds
-- ARGV[2] how long (ms, from now) the limiters must be kept at least

local until_ms = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local h = tonumber(redis.call("HGET", key, "h"))
  if not h or h < until_ms then
    redis.call("HSET", key, "h", string.format("%.0f", until_ms))
  end
  if redis.call("PTTL", key) < ttl then
    redis.call("PEXPIRE", key, ttl)
  end
end
return 0
