-- Takes due timers of one bot for firing, atomically, so each firing goes to one caller.
--
-- A bot's timers: the due set (id -> due, ms), the in-flight set (id -> lease end, ms) and the
-- payloads (id -> Timer JSON). Firing moves an id from due to in-flight; commit.lua takes it
-- out of in-flight (and drops the payload unless the id was scheduled again meanwhile).
--
-- Invariants:
-- * one firing at a time per id: a due id that is in flight under a live lease (it was
--   scheduled again while firing) is left due with its new time and fires after that commit;
-- * an in-flight id whose lease ran out (its replica died) fires again; a due entry of the
--   same id that is due by now is covered by that firing;
-- * an id without payload (unscheduled) never fires and is cleaned away; so does one whose
--   payload is not a timer (not written by this code): it would fail every firing, and hold
--   the good timers of its batch back with it, forever.
--
-- KEYS[1] the due set
-- KEYS[2] the in-flight set
-- KEYS[3] the payload hash
-- ARGV[1] now, in milliseconds
-- ARGV[2] the lease, in milliseconds
-- ARGV[3] at most this many timers
--
-- Returns the payloads (Timer JSON) of the timers taken.

local due, fly, payloads = KEYS[1], KEYS[2], KEYS[3]
local now, lease, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- Scores as integer strings (a Lua number would be formatted as "%.14g").
local now_s = string.format("%.0f", now)
local lease_end = string.format("%.0f", now + lease)
local out = {}
if max <= 0 then
  return out
end

-- The payload of a live timer, or nil (the id is then dropped everywhere).
local function payload(id)
  local p = redis.call("HGET", payloads, id)
  if p then
    local ok, t = pcall(cjson.decode, p)
    if ok and type(t) == "table" and t.id == id and type(t.due_ms) == "number" and t.payload ~= nil then
      return p
    end
    redis.log(redis.LOG_WARNING, "dropping timer " .. id .. ": its payload is not a timer")
  end
  redis.call("ZREM", due, id)
  redis.call("ZREM", fly, id)
  redis.call("HDEL", payloads, id)
  return nil
end

-- In flight, lease ran out: fire again.
for _, id in ipairs(redis.call("ZRANGEBYSCORE", fly, "-inf", now_s, "LIMIT", 0, max)) do
  local p = payload(id)
  if p then
    redis.call("ZADD", fly, lease_end, id)
    local d = redis.call("ZSCORE", due, id)
    if d and tonumber(d) <= now then
      redis.call("ZREM", due, id)
    end
    out[#out + 1] = p
  end
end

-- Due: oldest first, skipping ids still in flight (they stay due, in place).
local skipped = 0
while #out < max do
  local batch = redis.call("ZRANGEBYSCORE", due, "-inf", now_s, "LIMIT", skipped, max - #out)
  if #batch == 0 then
    break
  end
  for _, id in ipairs(batch) do
    if redis.call("ZSCORE", fly, id) then
      skipped = skipped + 1
    else
      local p = payload(id)
      redis.call("ZREM", due, id)
      if p then
        redis.call("ZADD", fly, lease_end, id)
        out[#out + 1] = p
      end
    end
  end
end
return out
