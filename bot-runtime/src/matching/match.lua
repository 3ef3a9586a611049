-- One matching attempt, atomically: a user is never in two chats and never matched twice,
-- whatever the number of replicas, because every read and the claim happen in this script.
--
-- Waiting members sit in one queue per (tier, gender, wanted gender): q:<tier>:<g>:<w>, scored
-- by the time they started waiting. A seeker only looks at the queues whose members suit them
-- and whom they suit, so every candidate is gender-compatible by construction; only recent
-- partners and blocks can make one unsuitable, which keeps the bounded scan effective even
-- behind a crowd (the oldest suitable member of each queue is found in a few steps).
--
-- A member is a person on one bot ("<bot>:<user id>"); the person is the Telegram user id,
-- the same on every bot. The rules that protect people hold per person: nobody is matched
-- with themselves through another bot, recent partners, blocks and reports are per person,
-- and a person is in at most one chat of the pool (busy:<user> names the member that holds it).
--
-- KEYS[1] the pool's key prefix (carries the pool's hash tag; every key below derives from it)
-- ARGV[1] seeker member ("<bot>:<user id>")
-- ARGV[2] seeker gender (m, f, o)
-- ARGV[3] wanted partner gender (m, f, o, or * for any)
-- ARGV[4] "1" if the seeker is VIP
-- ARGV[5] now, in milliseconds
-- ARGV[6] recent-partner window, in milliseconds
-- ARGV[7] how many waiting members to look at per queue (bounds the script's run time)
--
-- Returns {"in_chat", partner} | {"elsewhere", own member holding the chat} | {"matched", partner} | {"queued"}

local p = KEYS[1]
local me, gender, want, vip = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == "1"
local now, window, scan = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local want_code = (want == "*") and "any" or want

-- The person behind a member: the user id after the last ':' (bot names have no ':').
local function person(member)
  return string.match(member, ":(%-?%d+)$") or member
end
local me_person = person(me)

local current = redis.call("GET", p .. "pair:" .. me)
if current then
  return {"in_chat", current}
end
local holder = redis.call("GET", p .. "busy:" .. me_person)
if holder and holder ~= me then
  if redis.call("EXISTS", p .. "pair:" .. holder) == 1 then
    return {"elsewhere", holder}
  end
  -- A marker left behind by a chat that ended without clearing it: not busy.
  redis.call("DEL", p .. "busy:" .. me_person)
end

local function suitable(other)
  local other_person = person(other)
  -- Never with oneself, through whichever bot.
  if other_person == me_person then
    return false
  end
  -- Not again within the window (recorded both ways, per person, when a chat starts).
  local until_ms = redis.call("ZSCORE", p .. "recent:" .. me_person, other_person)
  if until_ms and tonumber(until_ms) > now then
    return false
  end
  -- Never with someone either side blocked or reported (per person, on every bot).
  if redis.call("SISMEMBER", p .. "blocked:" .. me_person, other_person) == 1 then
    return false
  end
  if redis.call("SISMEMBER", p .. "blocked:" .. other_person, me_person) == 1 then
    return false
  end
  return true
end

local genders = (want == "*") and {"m", "f", "o"} or {want}

-- The oldest suitable member of a tier, across the queues that fit the seeker.
local function best_in(tier)
  local best, best_score, best_queue = nil, nil, nil
  for _, og in ipairs(genders) do
    for _, ow in ipairs({"any", gender}) do
      local queue = p .. "q:" .. tier .. ":" .. og .. ":" .. ow
      -- Small batches: the first candidate almost always suits, so don't fetch the whole scan.
      local offset, looked, done = 0, 0, false
      while not done and looked < scan do
        local batch = math.min(8, scan - looked)
        local waiting = redis.call("ZRANGE", queue, offset, offset + batch - 1, "WITHSCORES")
        if #waiting == 0 then
          break
        end
        local removed = 0
        for i = 1, #waiting, 2 do
          local other, score = waiting[i], tonumber(waiting[i + 1])
          looked = looked + 1
          if best_score and score >= best_score then
            done = true
            break
          end
          local other_holder = redis.call("GET", p .. "busy:" .. person(other))
          if redis.call("EXISTS", p .. "pair:" .. other) == 1
            or (other_holder and redis.call("EXISTS", p .. "pair:" .. other_holder) == 1) then
            -- Stale entry (matched elsewhere without leaving the queue): clean it up, with its
            -- place record, so the member is not "waiting" any more (as the memory store).
            redis.call("ZREM", queue, other)
            if redis.call("HGET", p .. "u:" .. other, "q") == queue then
              redis.call("HDEL", p .. "u:" .. other, "q")
            end
            redis.call("SREM", p .. "pq:" .. person(other), other)
            removed = removed + 1
          elseif suitable(other) then
            best, best_score, best_queue = other, score, queue
            done = true
            break
          end
        end
        offset = offset + batch - removed
      end
    end
  end
  return best, best_queue
end

local function leave_queue(member)
  local q = redis.call("HGET", p .. "u:" .. member, "q")
  if q then
    redis.call("ZREM", q, member)
    redis.call("HDEL", p .. "u:" .. member, "q")
  end
  redis.call("SREM", p .. "pq:" .. person(member), member)
end

for _, tier in ipairs({"vip", "free"}) do
  local other = best_in(tier)
  if other then
    -- The claim: both sides, in one step.
    redis.call("SET", p .. "pair:" .. me, other)
    redis.call("SET", p .. "pair:" .. other, me)
    redis.call("SET", p .. "busy:" .. me_person, me)
    redis.call("SET", p .. "busy:" .. person(other), other)
    redis.call("INCR", p .. "active")
    -- The person leaves every queue of the pool, through whichever bot they waited.
    for _, who in ipairs({me, other}) do
      leave_queue(who)
      for _, m in ipairs(redis.call("SMEMBERS", p .. "pq:" .. person(who))) do
        leave_queue(m)
      end
    end
    if window > 0 then
      for _, pair in ipairs({{me_person, person(other)}, {person(other), me_person}}) do
        local key = p .. "recent:" .. pair[1]
        redis.call("ZADD", key, now + window, pair[2])
        redis.call("ZREMRANGEBYSCORE", key, "-inf", now)
        redis.call("PEXPIRE", key, window)
      end
    end
    return {"matched", other}
  end
end

-- Nobody suitable is waiting: wait, keeping one's place when searching again the same way.
local queue = p .. "q:" .. (vip and "vip" or "free") .. ":" .. gender .. ":" .. want_code
local previous = redis.call("HGET", p .. "u:" .. me, "q")
if previous and previous ~= queue then
  redis.call("ZREM", previous, me)
end
redis.call("HSET", p .. "u:" .. me, "q", queue)
redis.call("ZADD", queue, "NX", now, me)
-- The person's waiting members (one per bot they search through), for cancel_person.lua.
redis.call("SADD", p .. "pq:" .. me_person, me)
return {"queued"}
