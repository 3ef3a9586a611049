-- Appends an update to a bot's inbound queue unless it is full. Never trims: what was
-- accepted stays until the drainer acknowledges it.
-- KEYS[1] the inbound stream
-- ARGV[1] the most entries the stream may hold, ARGV[2] the field name, ARGV[3] the update's JSON
-- Returns 1 when added, 0 when the queue is full (nothing written).
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3])
return 1
