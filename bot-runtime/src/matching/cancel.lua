-- Leaves the waiting queue. KEYS[1] the pool's key prefix; ARGV[1] the member.
-- Returns 1 if the member was waiting, 0 otherwise.
local p, me = KEYS[1], ARGV[1]
local person = string.match(me, ":(%-?%d+)$") or me
redis.call("SREM", p .. "pq:" .. person, me)
local q = redis.call("HGET", p .. "u:" .. me, "q")
if not q then
  return 0
end
redis.call("HDEL", p .. "u:" .. me, "q")
return redis.call("ZREM", q, me)
