-- Moves one key of release N (KEYS[1], under the bare pool tag ARGV[1]) to its namespaced name
-- (KEYS[2], under ARGV[2]), atomically. Where this release already wrote the new key (a new
-- replica served the pool while old ones still ran), the two are merged by type so nothing
-- either release wrote is lost: sorted sets and hashes keep the new release's entries and add
-- the old ones it lacks, sets are united, stream entries are appended (after the new ones: a
-- chat's old and new jobs may swap order during a rollout), the chat counter is added, and
-- for any other string the new release's value wins. A waiting member's hash (`u:<member>`)
-- names its queue by full key: that name is moved to the new prefix too.
-- Returns 1 if something moved, 0 if the old key was gone.
local from, to = KEYS[1], KEYS[2]
local old_prefix, new_prefix = ARGV[1], ARGV[2]
local t = redis.call("TYPE", from)["ok"]
if t == "none" then
  return 0
end
if redis.call("EXISTS", to) == 0 then
  redis.call("RENAME", from, to)
elseif t == "zset" then
  local entries = redis.call("ZRANGE", from, 0, -1, "WITHSCORES")
  for i = 1, #entries, 2 do
    redis.call("ZADD", to, "NX", entries[i + 1], entries[i])
  end
  redis.call("DEL", from)
elseif t == "hash" then
  local fields = redis.call("HGETALL", from)
  for i = 1, #fields, 2 do
    redis.call("HSETNX", to, fields[i], fields[i + 1])
  end
  redis.call("DEL", from)
elseif t == "set" then
  redis.call("SUNIONSTORE", to, to, from)
  redis.call("DEL", from)
elseif t == "stream" then
  for _, entry in ipairs(redis.call("XRANGE", from, "-", "+")) do
    redis.call("XADD", to, "*", unpack(entry[2]))
  end
  redis.call("DEL", from)
else
  if string.sub(to, -7) == ":active" then
    redis.call("INCRBY", to, tonumber(redis.call("GET", from)) or 0)
  end
  redis.call("DEL", from)
end
-- A waiting member's queue name moves with its queue.
if string.sub(to, #new_prefix + 1, #new_prefix + 2) == "u:" and redis.call("TYPE", to)["ok"] == "hash" then
  local q = redis.call("HGET", to, "q")
  if q and string.sub(q, 1, #old_prefix) == old_prefix then
    redis.call("HSET", to, "q", new_prefix .. string.sub(q, #old_prefix + 1))
  end
end
return 1
