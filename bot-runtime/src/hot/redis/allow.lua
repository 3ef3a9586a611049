-- One request against a rate limit (GCRA): `rate` per period with a burst.
--
-- KEYS[1] the limit's key: the theoretical arrival time (TAT) of the next request, in µs
-- ARGV[1] now, in milliseconds
-- ARGV[2] the emission interval (period / rate), in µs
-- ARGV[3] the burst tolerance ((burst - 1) * interval), in µs
--
-- Returns 1 if allowed (and counted: TAT = max(TAT, now) + interval), 0 if over (nothing
-- counted). The key expires once it no longer differs from a fresh one (plus a margin).

local now = tonumber(ARGV[1]) * 1000
local interval, tolerance = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call("GET", KEYS[1])) or 0
if now < tat - tolerance then
  return 0
end
tat = math.max(tat, now) + interval
redis.call("SET", KEYS[1], string.format("%.0f", tat), "PX", math.ceil((tat - now) / 1000) + 1000)
return 1
