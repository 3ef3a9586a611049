-- Takes an update for processing, atomically (so two replicas never both get "taken").
--
-- The marker key of an update holds "lease:<random>" (with a PX lease) while some replica
-- processes it and "done" (with the keep TTL, written by commit.lua) once its effects are in
-- the outboxes. A lease that ran out is simply gone: the update can be taken again.
--
-- KEYS[1] the update's marker key
-- ARGV[1] the lease value to write ("lease:<random>")
-- ARGV[2] the lease, in milliseconds
--
-- Returns "taken" (the lease is ours), or the value found ("done", or another "lease:...").

local v = redis.call("GET", KEYS[1])
if not v then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return "taken"
end
return v
