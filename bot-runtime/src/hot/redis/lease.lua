-- Takes or renews a named lease (poller, outbox shard consumer), atomically.
--
-- KEYS[1] the lease key (holds the holder's id, with a PX TTL)
-- ARGV[1] the holder
-- ARGV[2] the TTL, in milliseconds
--
-- Returns 1 if the holder holds the lease afterwards (taken, or renewed: TTL reset), else 0.

local v = redis.call("GET", KEYS[1])
if not v then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
