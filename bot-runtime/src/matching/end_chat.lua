-- Ends the chat of a member for both sides, atomically (either side may call it, any number
-- of times: only the first call finds a partner).
-- KEYS[1] the pool's key prefix; ARGV[1] the member.
-- Returns the partner, or false when the member was not in a chat.
local p, me = KEYS[1], ARGV[1]
local function person(member)
  return string.match(member, ":(%-?%d+)$") or member
end
-- The person is free again (only if this member held the chat).
local function free(member)
  local key = p .. "busy:" .. person(member)
  if redis.call("GET", key) == member then
    redis.call("DEL", key)
  end
end
local partner = redis.call("GET", p .. "pair:" .. me)
if not partner then
  return false
end
redis.call("DEL", p .. "pair:" .. me)
free(me)
if redis.call("GET", p .. "pair:" .. partner) == me then
  redis.call("DEL", p .. "pair:" .. partner)
  free(partner)
  -- One chat fewer (only once per chat: the second side's call finds no pair).
  if redis.call("DECR", p .. "active") < 0 then
    redis.call("SET", p .. "active", 0)
  end
end
return partner
