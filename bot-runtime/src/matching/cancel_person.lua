-- Takes a person out of every waiting queue of the pool, through whichever bot they wait
-- (a restriction or ban is per person). KEYS[1] the pool's key prefix; ARGV[1] the user id.
-- Returns how many queue entries were removed.
local p, person = KEYS[1], ARGV[1]
local removed = 0
for _, member in ipairs(redis.call("SMEMBERS", p .. "pq:" .. person)) do
  local q = redis.call("HGET", p .. "u:" .. member, "q")
  if q then
    removed = removed + redis.call("ZREM", q, member)
    redis.call("HDEL", p .. "u:" .. member, "q")
  end
end
redis.call("DEL", p .. "pq:" .. person)
return removed
