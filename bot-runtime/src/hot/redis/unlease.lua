-- Gives a named lease up, only if the given holder holds it (a holder whose lease ran out and
-- was taken by another must not remove the other's lease).
--
-- KEYS[1] the lease key
-- ARGV[1] the holder
--
-- Returns 1 if the lease was removed, 0 otherwise.

if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
