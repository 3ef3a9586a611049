-- The commit: appends an update's (or a timer's) effects to the outboxes and marks it done, in
-- one step. Invariant: the jobs are in the outboxes if and only if the marker says done, so a
-- crash before this leaves nothing behind and a crash after it leaves the work done. All keys
-- carry the pool's hash tag (one Redis Cluster slot).
--
-- ARGV[1] the marker kind: "update", "timer" or "none"
-- ARGV[2] update: how long "done" is remembered (ms); timer: the timer id; none: ""
-- ARGV[3] n, the number of marker keys: update 2, timer 3, none 0
-- ARGV[4] update: the update's bit in its done-mark segment; otherwise ""
-- ARGV[5] update: how long the release-N "done" claim key is kept (ms); otherwise ""
-- KEYS[1..n] update: { the update's claim key, its done-mark segment }
--            timer:  { the bot's in-flight timer set, its due set, its payload hash }
-- KEYS[n+i], ARGV[5+i] (i = 1..#jobs): the outbox stream of job i and the job (JSON), in
--            order; each stream keeps the order its jobs are given in.
-- ARGV[5+#jobs+k]: the wake channels of the bots that got jobs (once each): PUBLISHed after
--            the jobs, so their idle consumers on every replica look at once (no polling).
--
-- Returns 1, or 0 if the update was already done (another replica whose lease outlived ours
-- committed it first): then nothing is appended, so the effects exist exactly once.
--
-- An update's done-ness is one bit (see claim_update.lua): the segment's TTL is renewed to
-- ARGV[2] at every mark. The claim key is set to "done" for ARGV[5] only, so replicas of the
-- previous release (which read only that key) still see it during a rolling upgrade.
--
-- A timer's marker only leaves the in-flight set: if the timer was scheduled again while it
-- was in flight (it is in the due set again), it stays scheduled with its new time and
-- payload; otherwise its payload is deleted.

local kind = ARGV[1]
local n = tonumber(ARGV[3])

if kind == "update" then
  if redis.call("GET", KEYS[1]) == "done" or redis.call("GETBIT", KEYS[2], ARGV[4]) == 1 then
    return 0
  end
end

local jobs = #KEYS - n
for i = n + 1, #KEYS do
  redis.call("XADD", KEYS[i], "*", "j", ARGV[5 + i - n])
end
for k = 6 + jobs, #ARGV do
  redis.call("PUBLISH", ARGV[k], "")
end

if kind == "update" then
  redis.call("SETBIT", KEYS[2], ARGV[4], 1)
  redis.call("PEXPIRE", KEYS[2], ARGV[2])
  redis.call("SET", KEYS[1], "done", "PX", ARGV[5])
elseif kind == "timer" then
  local id = ARGV[2]
  redis.call("ZREM", KEYS[1], id)
  if not redis.call("ZSCORE", KEYS[2], id) then
    redis.call("HDEL", KEYS[3], id)
  end
end
return 1
