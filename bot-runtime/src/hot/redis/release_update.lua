-- Gives an update back after a failed attempt: deletes its marker only while it is a lease,
-- so a done update stays done (its effects are in the outboxes and must not be redone).
--
-- KEYS[1] the update's marker key
--
-- Returns 1 if a lease was deleted, 0 otherwise.

local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, 6) == "lease:" then
  return redis.call("DEL", KEYS[1])
end
return 0
