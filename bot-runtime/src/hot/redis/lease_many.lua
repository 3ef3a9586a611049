-- Takes or renews several named leases for one holder in one step (a replica's outbox shard
-- leases): lease.lua for each key. All keys carry the pool's hash tag.
--
-- KEYS[1..n] the lease keys
-- ARGV[1] the holder
-- ARGV[2] the TTL, in milliseconds
--
-- Returns an array: 1 where the holder holds the lease afterwards, else 0.

local held = {}
for i = 1, #KEYS do
  local v = redis.call("GET", KEYS[i])
  if not v then
    redis.call("SET", KEYS[i], ARGV[1], "PX", ARGV[2])
    held[i] = 1
  elseif v == ARGV[1] then
    redis.call("PEXPIRE", KEYS[i], ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
