-- Extends the lease on an update being handled: only while the marker is a lease, so a done
-- update stays done (with its own keep TTL) and a lease that ran out is not revived.
--
-- KEYS[1] the update's marker key
-- ARGV[1] the lease, in milliseconds
--
-- Returns 1 if the lease was extended, 0 otherwise.

local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, 6) == "lease:" then
  return redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return 0
