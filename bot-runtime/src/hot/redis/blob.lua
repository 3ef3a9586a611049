-- One media blob's life (hot/blobs.rs), all on the pool's slot.
--
-- KEYS[1] its state (hash: size, done "0"/"1", lease = its writer's deadline in ms)
-- KEYS[2] its bytes (string, appended by the writer, read by range)
-- KEYS[3] its holders (set: the relayed messages whose upload still needs it)
-- ARGV[1] "begin", "finish", "hold" or "release"
--
-- begin   ARGV[2] now ms, ARGV[3] the writer's lease ms, ARGV[4] ttl ms
--         → 1 already complete, 2 another writer's lease is live, 0 the caller writes it now
--           (whatever an abandoned write left is deleted first)
-- finish  ARGV[2] size, ARGV[3] holder, ARGV[4] ttl ms → 1
-- hold    ARGV[2] holder, ARGV[3] ttl ms → 1 held, 0 no complete blob (deleted meanwhile)
-- release ARGV[2] holder → 1 when no holder is left and the blob is deleted (its reservation
--         may then be freed), 0 while others still hold it (or a new writer is writing it)
--
-- Invariant: a complete blob is deleted only when its last holder is done, and a holder is
-- added only to a complete blob, atomically — so an upload never finds its bytes gone unless
-- the blob outlived its TTL.

local op = ARGV[1]

-- Adds a holder and keeps all three keys for `ttl` ms from now.
local function hold(holder, ttl)
  redis.call("SADD", KEYS[3], holder)
  for i = 1, 3 do
    redis.call("PEXPIRE", KEYS[i], ttl)
  end
end

if op == "begin" then
  local state = redis.call("HMGET", KEYS[1], "done", "lease")
  if state[1] == "1" then
    return 1
  end
  local now = tonumber(ARGV[2])
  if state[2] and tonumber(state[2]) > now then
    return 2
  end
  redis.call("UNLINK", KEYS[2], KEYS[3])
  redis.call("HSET", KEYS[1], "done", "0", "size", "0", "lease", now + tonumber(ARGV[3]))
  redis.call("PEXPIRE", KEYS[1], ARGV[4])
  return 0
end

if op == "finish" then
  redis.call("HSET", KEYS[1], "done", "1", "size", ARGV[2])
  redis.call("HDEL", KEYS[1], "lease")
  hold(ARGV[3], ARGV[4])
  return 1
end

if op == "hold" then
  if redis.call("HGET", KEYS[1], "done") ~= "1" then
    return 0
  end
  hold(ARGV[2], ARGV[3])
  return 1
end

-- release
redis.call("SREM", KEYS[3], ARGV[2])
if redis.call("SCARD", KEYS[3]) > 0 then
  return 0
end
-- A blob being written again under the same id (this one had expired) is its writer's.
if redis.call("HGET", KEYS[1], "done") == "0" then
  return 0
end
redis.call("UNLINK", KEYS[1], KEYS[2], KEYS[3])
return 1
