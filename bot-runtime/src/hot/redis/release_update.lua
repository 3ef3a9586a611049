-- Gives an update back after a failed attempt: deletes its marker only while it is a lease,
-- so a done update stays done (its effects are in the outboxes and must not be redone); and
-- keeps the attempt's time as the update's clock for its retries (unless one is kept).
--
-- KEYS[1] the update's marker key
-- KEYS[2] the update's clock key
-- ARGV[1] the attempt's time in ms, or "" to keep none
-- ARGV[2] how long the clock is kept, in milliseconds
--
-- Returns 1 if a lease was deleted, 0 otherwise.

local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, 6) == "lease:" then
  if ARGV[1] ~= "" then
    redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", ARGV[2])
  end
  return redis.call("DEL", KEYS[1])
end
return 0
