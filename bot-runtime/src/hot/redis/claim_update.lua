-- Takes an update for processing, atomically (so two replicas never both get "taken").
--
-- Done-ness lives in a bitmap segment per 32,768 consecutive updates of a bot (one bit per
-- update, kept 26 h after the segment's last write). The claim key of an update holds
-- "lease:<random>" (with a PX lease) while some replica processes it; a lease that ran out is
-- simply gone: the update can be taken again. Release N marked done-ness as "done" in the claim
-- key itself; that is still honoured (this release also writes it, briefly, for a rollout).
--
-- KEYS[1] the update's claim key
-- KEYS[2] the bot's done-mark segment holding the update's bit
-- KEYS[3] the update's clock key (its first attempt's time, kept after a failed attempt)
-- ARGV[1] the lease value to write ("lease:<random>")
-- ARGV[2] the lease, in milliseconds
-- ARGV[3] the update's bit in the segment
-- ARGV[4] now, in milliseconds
--
-- Returns "taken:<ms>" (the lease is ours; <ms> the update's clock: the first attempt's time
-- if one failed before, else ARGV[4]), "done", or the lease found ("lease:...").

if redis.call("GETBIT", KEYS[2], ARGV[3]) == 1 then
  return "done"
end
local v = redis.call("GET", KEYS[1])
if not v then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return "taken:" .. (redis.call("GET", KEYS[3]) or ARGV[4])
end
return v
